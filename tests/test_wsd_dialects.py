"""WS-Discovery replies in the forms vendors send them, recorded-style and live from the simulator.

Each recorded-style reply must give exactly its one device with a usable XAddr;
the simulator's dialects (``gateway sim --wsd-dialect``) answer real unicast
Probes over UDP on loopback and every camera is found once; wrapped hostile
replies stay refused (fuzzed with hypothesis).
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cameras import discovery, wsd
from gateway.cameras.cli import discover_main
from gateway.sim import wsd_responder
from gateway.sim.camera import SimCamera
from gateway.sim.wsd_dialects import DIALECTS
from tests.support import free_port
from tests.test_discovery import netns as netns  # the namespace fixture

SENDER = "192.168.1.64"
ROOT = Path(__file__).resolve().parent.parent
S12 = "http://www.w3.org/2003/05/soap-envelope"
S11 = "http://schemas.xmlsoap.org/soap/envelope/"
A04 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
A10 = "http://www.w3.org/2005/08/addressing"
D05 = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
D09 = "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"
XADDR = f"http://{SENDER}/onvif/device_service"


def envelope(body: str, header: str = "", env: str = S12, wsa: str = A04, wsd_ns: str = D05) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{env}" '
        f'xmlns:wsa="{wsa}" xmlns:wsdd="{wsd_ns}" xmlns:dn="http://www.onvif.org/ver10/network/'
        f'wsdl"><SOAP-ENV:Header>{header}</SOAP-ENV:Header><SOAP-ENV:Body>{body}'
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def match(endpoint: str, xaddrs: str = XADDR, types: str = "dn:NetworkVideoTransmitter") -> str:
    types_el = f"<wsdd:Types>{types}</wsdd:Types>" if types else ""
    xaddrs_el = f"<wsdd:XAddrs>{xaddrs}</wsdd:XAddrs>" if xaddrs else ""
    return (
        f"<wsa:EndpointReference><wsa:Address>{endpoint}</wsa:Address></wsa:EndpointReference>"
        f"{types_el}<wsdd:Scopes>onvif://www.onvif.org/name/IPC</wsdd:Scopes>{xaddrs_el}"
        "<wsdd:MetadataVersion>1</wsdd:MetadataVersion>"
    )


def head(action: str = "ProbeMatches", wsd_ns: str = D05, relates: bool = True) -> str:
    out = "<wsa:MessageID>uuid:5f1e</wsa:MessageID>"
    if relates:
        out += "<wsa:RelatesTo>uuid:probe-1</wsa:RelatesTo>"
    return out + (f"<wsa:Action>{wsd_ns}/{action}</wsa:Action>" if action else "")


def matches(inner: str) -> str:
    return f"<wsdd:ProbeMatches><wsdd:ProbeMatch>{inner}</wsdd:ProbeMatch></wsdd:ProbeMatches>"


GSOAP_HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: gSOAP/2.8\r\nContent-Type: application/soap+xml; "
    b"charset=utf-8\r\nContent-Length: 1234\r\nConnection: close\r\n\r\n"
)
GB_NAME = "村口摄像机"

# name → (reply bytes, expected endpoint, expected first XAddr)
RECORDED: dict[str, tuple[bytes, str, str]] = {
    "onvif standard (hikvision-like)": (
        envelope(matches(match("urn:uuid:hik-1")), head()).encode(),
        "urn:uuid:hik-1",
        XADDR,
    ),
    "soap 1.1 envelope": (
        envelope(matches(match("urn:uuid:s11")), head(), env=S11).encode(),
        "urn:uuid:s11",
        XADDR,
    ),
    "wsa 2005/08 with discovery 2005/04 (uniview-like)": (
        envelope(matches(match("urn:uuid:unv")), head(), wsa=A10).encode(),
        "urn:uuid:unv",
        XADDR,
    ),
    "ws-discovery 1.1 namespace": (
        envelope(matches(match("urn:uuid:d11")), head(wsd_ns=D09), wsa=A10, wsd_ns=D09).encode(),
        "urn:uuid:d11",
        XADDR,
    ),
    "probematch straight in body, action ProbeMatch": (
        envelope(
            f"<wsdd:ProbeMatch>{match('uuid:bare')}</wsdd:ProbeMatch>", head("ProbeMatch")
        ).encode(),
        "uuid:bare",
        XADDR,
    ),
    "no action, no relatesto, no types": (
        envelope(matches(match("urn:uuid:quiet", types="")), head("", relates=False)).encode(),
        "urn:uuid:quiet",
        XADDR,
    ),
    "gsoap http response framing and trailing NULs (unicast probe)": (
        GSOAP_HEAD + envelope(matches(match("urn:uuid:gsoap")), head()).encode() + b"\x00\x00",
        "urn:uuid:gsoap",
        XADDR,
    ),
    "utf-8 BOM and whitespace": (
        b"\xef\xbb\xbf\r\n" + envelope(matches(match("urn:uuid:bom")), head()).encode() + b"\n",
        "urn:uuid:bom",
        XADDR,
    ),
    "gb2312 declaration with raw chinese scope (dahua-like)": (
        envelope(matches(match("urn:uuid:gb").replace("/name/IPC", f"/name/{GB_NAME}")), head())
        .replace('encoding="UTF-8"', 'encoding="GB2312"')
        .encode("gb2312"),
        "urn:uuid:gb",
        XADDR,
    ),
    "xaddrs 0.0.0.0": (
        envelope(
            matches(match("urn:uuid:zero", "http://0.0.0.0:8080/onvif/device_service"))
        ).encode(),
        "urn:uuid:zero",
        f"http://{SENDER}:8080/onvif/device_service",
    ),
    "xaddrs another host, ipv6 and the sender": (
        envelope(
            matches(
                match(
                    "urn:uuid:multi",
                    "http://172.31.5.5/onvif/device_service http://[fe80::1]/onvif/device_service "
                    f"{XADDR}",
                )
            )
        ).encode(),
        "urn:uuid:multi",
        XADDR,
    ),
    "xaddrs: a NAT address first, the reply's subnet second (its port wins)": (
        envelope(
            matches(
                match(
                    "urn:uuid:nat",
                    "http://100.64.3.9:8000/onvif/device_service "
                    "http://192.168.1.99:8899/onvif/device_service",
                )
            )
        ).encode(),
        "urn:uuid:nat",
        f"http://{SENDER}:8899/onvif/device_service",
    ),
    "no xaddrs at all": (
        envelope(matches(match("urn:uuid:noxaddr", xaddrs=""))).encode(),
        "urn:uuid:noxaddr",
        XADDR,
    ),
    "resolvematches": (
        envelope(
            f"<wsdd:ResolveMatches><wsdd:ResolveMatch>{match('urn:uuid:res')}</wsdd:ResolveMatch>"
            "</wsdd:ResolveMatches>",
            head("ResolveMatches"),
        ).encode(),
        "urn:uuid:res",
        XADDR,
    ),
    "hello": (
        envelope(
            f"<wsdd:Hello>{match('urn:uuid:hello')}</wsdd:Hello>", head("Hello", relates=False)
        ).encode(),
        "urn:uuid:hello",
        XADDR,
    ),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_recorded_vendor_reply_gives_its_device(name: str) -> None:
    data, endpoint, first_xaddr = RECORDED[name]
    found = wsd.parse_probe_matches(data, SENDER)
    assert [m.endpoint for m in found] == [endpoint]
    assert found[0].xaddrs[0] == first_xaddr
    assert found[0].address == SENDER
    if "gb2312" in name:
        assert found[0].name == GB_NAME


REFUSED = {
    "another client's probe": wsd.build_probe("dn:NetworkVideoTransmitter")[0],
    "bye": envelope(
        "<wsdd:Bye><wsa:EndpointReference><wsa:Address>urn:uuid:x</wsa:Address>"
        "</wsa:EndpointReference></wsdd:Bye>",
        head("Bye"),
    ).encode(),
    "soap fault": envelope(
        "<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender</SOAP-ENV:Value>"
        "</SOAP-ENV:Code><SOAP-ENV:Reason><SOAP-ENV:Text>MatchingRuleNotSupported</SOAP-ENV:Text>"
        "</SOAP-ENV:Reason></SOAP-ENV:Fault>"
    ).encode(),
    "http framed entity bomb": GSOAP_HEAD
    + b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb">]><a>&b;</a>',
    "gb2312 with external entity": (
        b'<?xml version="1.0" encoding="GB2312"?><!DOCTYPE a [<!ENTITY x SYSTEM '
        b'"file:///etc/passwd">]><a>&x;</a>'
    ),
    "http head only": GSOAP_HEAD,
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_replies_without_a_device_or_hostile_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(wsd.WsdRejected) as info:
        wsd.parse_probe_matches(REFUSED[name], SENDER)
    assert str(info.value)
    if name == "soap fault":
        assert "MatchingRuleNotSupported" in str(info.value)


WRAPPERS = st.sampled_from(
    [b"", GSOAP_HEAD, b"\xef\xbb\xbf", b"POST / HTTP/1.1\r\n\r\n", b"HTTP/1.0 200\n\n"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wrapper=WRAPPERS,
    reply=st.sampled_from(sorted(RECORDED)),
    cut=st.integers(0, 4000),
    junk=st.binary(max_size=64),
    tail=st.binary(max_size=16),
)
def test_wrapped_and_mutated_replies_stay_harmless(
    wrapper: bytes, reply: str, cut: int, junk: bytes, tail: bytes
) -> None:
    data = RECORDED[reply][0]
    data = wrapper + data[:cut] + junk + data[cut:] + tail
    try:
        found = wsd.parse_probe_matches(data, SENDER)
    except wsd.WsdRejected as err:
        assert str(err)
        return
    assert 1 <= len(found) <= 64
    for m in found:
        assert len(m.endpoint) <= 512 and len(m.xaddrs) <= 16
        assert all(x.startswith(("http://", "https://")) for x in m.xaddrs)


_addresses = itertools.count(1)


async def test_every_simulator_dialect_is_found_once_over_udp() -> None:
    net = f"127.93.{random.randint(0, 254)}"  # our own addresses, whatever runs beside
    port = free_port(f"{net}.1")
    cameras = []
    for i, _ in enumerate(DIALECTS, start=1):
        address = f"{net}.{next(_addresses)}"
        cameras.append(SimCamera(index=i, address=address, http_port=8000 + i, rtsp_port=8554))
    responder = await wsd_responder.start(cameras, None, port=port, dialect="mixed")
    try:
        scan = discovery.Scan(port=port, timeout=3.0)
        result = await scan.run([c.address for c in cameras])
    finally:
        responder.close()
    assert result.rejected == 0, result.reject_reasons
    assert sorted(d.endpoint for d in result.devices) == sorted(c.endpoint for c in cameras)
    by_address = {d.address: d for d in result.devices}
    for cam in cameras:
        # 0.0.0.0, stale and foreign XAddrs come back as the address that answered.
        assert by_address[cam.address].xaddrs[0] == cam.onvif_url(), cam.index


def test_cli_finds_a_camera_that_frames_unicast_replies_like_gsoap(sim_factory, capsys) -> None:
    """The field report: "0 device(s) found; 2 bad replies ignored" for a unicast Probe."""
    net = f"127.94.{random.randint(0, 254)}"
    args = ["--cameras", "2", "--base", f"{net}.1", "--wsd-dialect", "http-framed", "--no-onvif"]
    sim = sim_factory(*args, "--size", "160x90", "--sub-size", "160x90", "--fps", "5")
    capsys.readouterr()
    # `gateway discover`, in this process; a /30 holds exactly the two cameras, so the
    # scan ends as soon as both have answered.
    assert discover_main(["--range", f"{net}.0/30", "--timeout", "5", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "2 device(s) found" in out.err, out.err
    assert "bad replies" not in out.err
    for cam in sim.cameras:
        assert cam["endpoint"] in out.out and cam["onvif_url"] in out.out


@pytest.mark.netns
def test_hello_and_bye_are_heard_in_a_network_namespace(netns) -> None:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.netns_announce", "mixed"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["learnt"] == got["expected"]  # Hello: both cameras, without a scan
    assert got["left"] == []  # Bye: forgotten
    assert got["marks"] == [["cam-01", True], ["cam-01", False]]
