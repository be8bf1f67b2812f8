"""The SIP parser, framer and digest of the GB/T 28181 user agent, with hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.gb28181 import manscdp
from gateway.gb28181.sip.digest import authorization, parse_challenge
from gateway.gb28181.sip.message import (
    MAX_HEAD,
    SipMessage,
    SipParseError,
    StreamFramer,
    addr_params,
    parse_datagram,
    uri_user,
    via_params,
)

INVITE = (
    b"INVITE sip:34020000001320000001@3402000000 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1\r\n"
    b"f: <sip:34020000002000000001@3402000000>;tag=abc\r\n"
    b"t: <sip:34020000001320000001@3402000000>\r\n"
    b"i: call-1\r\n"
    b"cseq: 20 INVITE\r\n"
    b"SUBJECT: 34020000001320000001:0,34020000002000000001:0\r\n"
    b"c: APPLICATION/SDP\r\n"
    b"l: 4\r\n\r\n"
    b"v=0\r"
)


def test_compact_and_any_case_headers_are_understood() -> None:
    msg = parse_datagram(INVITE)
    assert msg.method == "INVITE"
    assert msg.call_id == "call-1"
    assert msg.cseq == (20, "INVITE")
    assert msg.branch == "z9hG4bK1"
    assert msg.get("content-type") == "APPLICATION/SDP"
    assert msg.body == b"v=0\r"
    assert addr_params(msg.get("From"))["tag"] == "abc"
    assert uri_user(msg.uri) == "34020000001320000001"
    assert via_params(msg.get("Via"))["transport"] == "UDP"


def test_serialised_message_parses_back_identically() -> None:
    msg = parse_datagram(INVITE)
    again = parse_datagram(msg.to_bytes())
    assert again.headers == [*msg.headers[:-1], ("Content-Length", "4")]
    assert again.body == msg.body


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"HELLO\r\n\r\n", "start line"),
        (INVITE.replace(b"l: 4", b"l: 40"), "body bytes"),
        (INVITE.replace(b"l: 4", b"l: 99999999"), "Content-Length"),
        (INVITE.replace(b"l: 4", b"l: -1"), "Content-Length"),
        (INVITE.replace(b"i: call-1\r\n", b""), "Call-ID"),
        (INVITE.replace(b"cseq: 20 INVITE", b"cseq: x"), "CSeq"),
        (INVITE.split(b"\r\n\r\n")[0], "truncated"),
        (b"OPTIONS sip:x SIP/2.0\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n", "too"),
        (INVITE.replace(b"i: call-1", b"bad header"), "header line"),
    ],
)
def test_malformed_datagrams_are_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(SipParseError, match=why):
        parse_datagram(data)


def test_stream_framer_cuts_messages_at_any_split() -> None:
    stream = INVITE + b"\r\n" + INVITE.replace(b"call-1", b"call-2")
    for cut in range(1, len(stream)):
        framer = StreamFramer()
        got = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [m.call_id for m in got] == ["call-1", "call-2"]


def test_stream_framer_refuses_endless_headers_and_missing_length() -> None:
    with pytest.raises(SipParseError, match="too long"):
        StreamFramer().feed(b"A" * (MAX_HEAD + 10))
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(INVITE.replace(b"l: 4\r\n", b""))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_datagram_parser_only_raises_parse_errors(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_datagram(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(INVITE)), st.binary(max_size=64))
def test_fuzz_mutated_invite(pos: int, junk: bytes) -> None:
    data = INVITE[:pos] + junk + INVITE[pos:]
    try:
        msg = parse_datagram(data)
    except SipParseError:
        return
    assert isinstance(msg, SipMessage)
    framer = StreamFramer()
    with contextlib.suppress(SipParseError):
        framer.feed(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=1500), st.sampled_from(["gb2312", "gb18030", "utf-8"]))
def test_fuzz_manscdp_parser_only_raises_manscdp_errors(body: bytes, charset: str) -> None:
    with contextlib.suppress(manscdp.ManscdpError):
        manscdp.parse(body, charset)


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def test_digest_with_qop_auth_matches_rfc_2617() -> None:
    ch = parse_challenge('Digest realm="3402000000", nonce="n1", qop="auth", algorithm=MD5')
    value = authorization(
        ch, method="REGISTER", uri="sip:x", username="u", password="p", cnonce="c"
    )
    ha1, ha2 = _md5("u:3402000000:p"), _md5("REGISTER:sip:x")
    assert f'response="{_md5(f"{ha1}:n1:00000001:c:auth:{ha2}")}"' in value
    assert "qop=auth" in value and "nc=00000001" in value


def test_digest_without_qop() -> None:
    ch = parse_challenge('Digest realm="r",nonce="n"')
    value = authorization(ch, method="MESSAGE", uri="sip:y", username="u", password="p")
    expect = _md5(f"{_md5('u:r:p')}:n:{_md5('MESSAGE:sip:y')}")
    assert f'response="{expect}"' in value and "qop" not in value


def test_bad_challenges_are_refused() -> None:
    for bad in [
        'Basic realm="x"',
        'Digest realm="r"',
        'Digest realm="r", nonce="n", algorithm=SM3',
    ]:
        with pytest.raises(SipParseError):
            parse_challenge(bad)


def test_manscdp_refuses_entities_and_wrong_charset() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "aaaa">]>'
        b"<Query><CmdType>Catalog</CmdType><SN>1</SN><DeviceID>&a;</DeviceID></Query>"
    )
    with pytest.raises(manscdp.ManscdpError, match="forbidden"):
        manscdp.parse(bomb, "gb2312")
    with pytest.raises(manscdp.ManscdpError, match="larger"):
        manscdp.parse(b"<a>" + b" " * 40000 + b"</a>", "gb2312")
    with pytest.raises(manscdp.ManscdpError, match="utf-8"):
        manscdp.parse(b"<Query>\xff\xfe</Query>", "utf-8")


def test_manscdp_round_trip_in_gb2312() -> None:
    body = manscdp.render(
        "Query", [("CmdType", "Catalog"), ("SN", 7), ("DeviceID", "城关镇")], "gb2312"
    )
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert "城关镇".encode("gb2312") in body
    q = manscdp.parse(body, "gb2312")
    assert (q.root, q.cmd, q.sn, q.device_id) == ("Query", "Catalog", "7", "城关镇")


HEADER_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Via", "CSeq", "l", "From", "To", "i", "Content-Length"]), HEADER_TEXT)
def test_fuzz_header_values_only_raise_parse_errors(name: str, value: str) -> None:
    lines = INVITE.decode("latin-1").split("\r\n")
    lines = [ln for ln in lines if not ln.lower().startswith(name.lower() + ":")]
    lines.insert(1, f"{name}: {value}")
    data = "\r\n".join(lines).encode("utf-8")
    try:
        msg = parse_datagram(data)
    except SipParseError:
        return
    assert msg.cseq[0] >= 0 and isinstance(msg.branch, str)


@settings(max_examples=300, deadline=None)
@given(st.lists(HEADER_TEXT, max_size=12))
def test_fuzz_sdp_offers_only_raise_sdp_errors(lines: list[str]) -> None:
    from gateway.gb28181 import sdp

    body = "\r\n".join(["v=0", "s=Play", *lines]).encode("utf-8", "replace")
    with contextlib.suppress(sdp.SdpError):
        sdp.parse_offer(body)


def test_unicode_digits_are_not_numbers() -> None:
    with pytest.raises(SipParseError, match="CSeq"):
        parse_datagram(INVITE.replace(b"cseq: 20 INVITE", "cseq: ²0 INVITE".encode()))
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_datagram(INVITE.replace(b"l: 4", "l: ٤".encode()))


@pytest.mark.parametrize(
    ("proto", "setup", "transport", "our_setup"),
    [
        ("RTP/AVP", "", "udp", ""),
        ("TCP/RTP/AVP", "a=setup:passive\r\n", "tcp-connect", "a=setup:active"),
        ("TCP/RTP/AVP", "a=setup:active\r\n", "tcp-listen", "a=setup:passive"),
        ("TCP/RTP/AVP", "", "tcp-connect", "a=setup:active"),
    ],
)
def test_sdp_offer_transport_and_answer(
    proto: str, setup: str, transport: str, our_setup: str
) -> None:
    from gateway.gb28181 import sdp

    offer = sdp.parse_offer(
        (
            "v=0\r\no=34020000002000000001 0 0 IN IP4 10.0.0.9\r\ns=Play\r\n"
            f"c=IN IP4 10.0.0.9\r\nt=0 0\r\nm=video 30000 {proto} 96 97 98\r\n"
            f"a=recvonly\r\na=rtpmap:96 PS/90000\r\n{setup}"
            "y=0200000123\r\nf=v/2/5/25/1/4096a///\r\n"
        ).encode()
    )
    assert (offer.host, offer.port, offer.transport, offer.ssrc) == (
        "10.0.0.9",
        30000,
        transport,
        200000123,
    )
    text = sdp.answer(offer, device_id="34020000001320000001", host="10.0.0.2", port=4000).decode()
    assert f"m=video 4000 {proto} 96" in text and "y=0200000123" in text
    assert "f=v/2/5/25/1/4096a///" in text and "a=sendonly" in text
    assert (our_setup in text) if our_setup else ("setup" not in text)
