"""WS-Discovery message building and ProbeMatches parsing, vendor variants and hostile input."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cameras import wsd

SENDER = "192.168.1.64"

# SOAP 1.2 with the usual prefixes: the shape most ONVIF cameras send.
HIK_STYLE = """<?xml version="1.0" encoding="UTF-8"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"
  xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing"
  xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
  xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
<env:Header>
  <wsadis:MessageID>urn:uuid:aaaa</wsadis:MessageID>
  <wsadis:RelatesTo>uuid:1234</wsadis:RelatesTo>
  <wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>
  <wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsadis:Action>
</env:Header>
<env:Body><d:ProbeMatches><d:ProbeMatch>
  <wsadis:EndpointReference><wsadis:Address>urn:uuid:cam-1</wsadis:Address></wsadis:EndpointReference>
  <d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>
  <d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming
    onvif://www.onvif.org/name/%E6%9D%91%E5%8F%A3%E8%B7%AF%E5%8F%A3
    onvif://www.onvif.org/location/city/hangzhou onvif://www.onvif.org/hardware/DS-2CD2T47G2</d:Scopes>
  <d:XAddrs>http://192.168.1.64/onvif/device_service http://[fe80::4a:1]/onvif/device_service</d:XAddrs>
  <d:MetadataVersion>10</d:MetadataVersion>
</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>"""

# SOAP 1.1 envelope, odd prefixes, WS-Discovery 1.1 namespace, no Types, 0.0.0.0 XAddr.
ODD_VENDOR = """<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:wsa5="http://www.w3.org/2005/08/addressing"
 xmlns:wsdd="http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01">
<SOAP-ENV:Body><wsdd:ProbeMatches><wsdd:ProbeMatch>
 <wsa5:EndpointReference><wsa5:Address>uuid:odd-2</wsa5:Address></wsa5:EndpointReference>
 <wsdd:Scopes>onvif://www.onvif.org/name/Gate%20Camera onvif://www.onvif.org/hardware/IPC</wsdd:Scopes>
 <wsdd:XAddrs>http://0.0.0.0:8080/onvif/device_service</wsdd:XAddrs>
</wsdd:ProbeMatch></wsdd:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>"""

# Raw (not URL-encoded) UTF-8 in scopes, a stale address, and two matches in one reply.
TWO_MATCHES = """<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery">
<s:Body><d:ProbeMatches>
 <d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:nvr-ch1</a:Address></a:EndpointReference>
  <d:Scopes>onvif://www.onvif.org/name/学校门口</d:Scopes>
  <d:XAddrs>http://10.0.0.99:80/onvif/device_service</d:XAddrs></d:ProbeMatch>
 <d:ProbeMatch><a:EndpointReference><a:Address>urn:uuid:nvr-ch2</a:Address></a:EndpointReference>
  <d:XAddrs>http://camera.local/onvif/device_service</d:XAddrs></d:ProbeMatch>
</d:ProbeMatches></s:Body></s:Envelope>"""


def test_probe_has_fresh_message_id_and_one_type() -> None:
    a, id_a = wsd.build_probe("dn:NetworkVideoTransmitter")
    _, id_b = wsd.build_probe("dn:NetworkVideoTransmitter")
    assert id_a != id_b and id_a.startswith("uuid:")
    root = ET.fromstring(a)
    ns = {"s": wsd.SOAP12, "a": wsd.WSA, "d": wsd.WSD}
    assert root.findtext("s:Header/a:MessageID", namespaces=ns) == id_a
    assert root.findtext("s:Body/d:Probe/d:Types", namespaces=ns) == "dn:NetworkVideoTransmitter"
    assert root.findtext("s:Header/a:Action", namespaces=ns).endswith("/discovery/Probe")
    assert b"tds:Device" in wsd.build_probe("tds:Device")[0]


def test_common_vendor_reply_with_chinese_name_and_ipv6() -> None:
    [m] = wsd.parse_probe_matches(HIK_STYLE.encode(), SENDER)
    assert m.endpoint == "urn:uuid:cam-1"
    assert m.name == "村口路口"
    assert m.location == "city/hangzhou"
    assert m.hardware == "DS-2CD2T47G2"
    assert m.xaddrs[0] == "http://192.168.1.64/onvif/device_service"
    assert "http://[fe80::4a:1]/onvif/device_service" in m.xaddrs
    assert m.types == ["dn:NetworkVideoTransmitter", "tds:Device"]
    assert m.metadata_version == 10 and m.relates_to == "uuid:1234"
    assert m.public()["address"] == SENDER


def test_soap11_wsd11_missing_types_and_unspecified_xaddr() -> None:
    [m] = wsd.parse_probe_matches(ODD_VENDOR.encode(), SENDER)
    assert m.endpoint == "uuid:odd-2"
    assert m.types == []
    assert m.name == "Gate Camera" and m.hardware == "IPC"
    assert m.xaddrs == [f"http://{SENDER}:8080/onvif/device_service"]


def test_raw_utf8_scopes_wrong_host_and_dns_names() -> None:
    one, two = wsd.parse_probe_matches(TWO_MATCHES.encode("utf-8"), SENDER)
    assert one.name == "学校门口"
    # 10.0.0.99 is not the sender and nothing names the sender: it moved, patch it.
    assert one.xaddrs == [f"http://{SENDER}:80/onvif/device_service"]
    assert two.xaddrs == ["http://camera.local/onvif/device_service"]


def test_fix_xaddrs_keeps_sender_first_and_other_real_addresses() -> None:
    xs = wsd.fix_xaddrs(
        ["http://192.168.1.9/onvif/device_service", f"http://{SENDER}:8000/onvif/device_service"],
        SENDER,
    )
    assert xs[0] == f"http://{SENDER}:8000/onvif/device_service"
    assert "http://192.168.1.9/onvif/device_service" in xs
    assert wsd.fix_xaddrs(["http://127.0.0.1/x"], SENDER) == [f"http://{SENDER}/x"]
    assert wsd.fix_xaddrs(["ftp://x/y", "http://h:notaport/", "garbage"], SENDER) == []


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol3;</s:Body></s:Envelope>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&xxe;</s:Body></s:Envelope>"""

HOSTILE = {
    "empty": b"",
    "not xml": b"\x00\x01\x02 hello",
    "truncated": HIK_STYLE.encode()[: len(HIK_STYLE) // 2],
    "oversize": HIK_STYLE.encode() + b" " * (wsd.MAX_MESSAGE_BYTES + 1),
    "billion laughs": BILLION_LAUGHS.encode(),
    "xxe": XXE.encode(),
    "dtd only": b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://evil/x.dtd"><x/>',
    "not soap": b"<html><body>hi</body></html>",
    "no body": f'<s:Envelope xmlns:s="{wsd.SOAP12}"><s:Header/></s:Envelope>'.encode(),
    "a probe, not a match": wsd.build_probe("tds:Device")[0],
    "empty matches": (
        f'<s:Envelope xmlns:s="{wsd.SOAP12}" xmlns:d="{wsd.WSD}"><s:Body><d:ProbeMatches/>'
        "</s:Body></s:Envelope>"
    ).encode(),
    "bad encoding": b'<?xml version="1.0" encoding="x-nonsense"?><a/>',
    "deep nesting": b"<a>" * 20000 + b"</a>" * 20000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_replies_are_rejected_with_a_reason(name: str) -> None:
    with pytest.raises(wsd.WsdRejected) as info:
        wsd.parse_probe_matches(HOSTILE[name], SENDER)
    assert str(info.value)


def test_specific_rejection_reasons() -> None:
    def reason(data: bytes) -> str:
        with pytest.raises(wsd.WsdRejected) as info:
            wsd.parse_probe_matches(data, SENDER)
        return str(info.value)

    assert "oversize" in reason(HOSTILE["oversize"])
    assert "forbidden" in reason(HOSTILE["billion laughs"])
    assert "forbidden" in reason(HOSTILE["xxe"])
    assert "malformed" in reason(HOSTILE["truncated"])
    assert "not a ProbeMatches" in reason(HOSTILE["a probe, not a match"])


def test_parse_scopes_decodes_and_joins_locations() -> None:
    info = wsd.parse_scopes(
        [
            "onvif://www.onvif.org/location/country/china",
            "onvif://www.onvif.org/location/%E9%95%87",
            "onvif://www.onvif.org/name/bad%ZZ%E6",
            "http://example/other",
        ]
    )
    assert info["location"] == "country/china, 镇"
    assert info["name"].startswith("bad%ZZ")
    assert info["hardware"] == ""


# Fuzz: whatever arrives, the parser answers with matches or a WsdRejected, nothing else.


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    with contextlib.suppress(wsd.WsdRejected):
        wsd.parse_probe_matches(data, SENDER)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=len(HIK_STYLE) - 1),
    st.integers(min_value=0, max_value=40),
    st.binary(max_size=16),
)
def test_mutated_replies_never_crash_the_parser(at: int, cut: int, junk: bytes) -> None:
    raw = HIK_STYLE.encode()
    data = raw[:at] + junk + raw[at + cut :]
    try:
        matches = wsd.parse_probe_matches(data, SENDER)
    except wsd.WsdRejected:
        return
    for m in matches:
        assert isinstance(m.endpoint, str) and all(isinstance(x, str) for x in m.xaddrs)
