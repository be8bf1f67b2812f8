"""Fuzzing the WHEP SDP path of a running gateway with garbage and mutated offers.

A real ``gateway run`` process watches a simulated camera; hypothesis POSTs
random bytes, line-level mutations of a real aiortc offer and offers with
hostile attribute values to ``/api/v1/streams/cam-01/whep``. Every answer must
be a 201 (then the session is deleted) or a 4xx with a reason, never a 5xx; the
gateway stays up, still answers a good offer, and logs no traceback.
"""

from __future__ import annotations

import asyncio
import functools
import re
import socket
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.relay.ice import host_addresses
from tests.support import small_sim_args

BASE = "127.0.160.1"
URL = "/api/v1/streams/cam-01/whep"
SDP = {"Content-Type": "application/sdp"}


async def _make_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


@functools.cache
def offer() -> str:
    """A real aiortc offer (recvonly H.264 video), made once per test run."""
    return asyncio.run(_make_offer())


HOSTILE_LINES = [
    "m=video 99999999 UDP/TLS/RTP/SAVPF 96",
    "m=video 9 UDP/TLS/RTP/SAVPF",
    "m=video 9 UDP/TLS/RTP/SAVPF x y z",
    "m=audio 9 UDP/TLS/RTP/SAVPF 0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=rtpmap:96 H264/90000/2/3",
    "a=rtpmap:999999 H264/notanumber",
    "a=rtpmap:96",
    "a=fmtp:96 profile-level-id=zzzzzz;packetization-mode=1",
    "a=fmtp:96 profile-level-id=42e01f;packetization-mode=7",
    "a=fmtp:96 ;;;=;==",
    "a=fmtp:x apt=notint",
    "a=rtcp-fb:96",
    "a=ssrc:notanumber cname:x",
    "a=ssrc:4294967296 cname:x",
    "a=ssrc-group:FID 1",
    "a=ssrc-group:FID",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 99999 typ host",
    "a=candidate:1 1 udp notint 127.0.0.1 1 typ host",
    "a=candidate:1 1 udp 1 999.999.1.1 1 typ host",
    "a=candidate:garbage",
    "a=candidate:1 1 udp 1 abcdef.local 9 typ host",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype",
    "a=fingerprint:sha-256 ZZ",
    "a=fingerprint:md5 00",
    "a=fingerprint:",
    "a=setup:bogus",
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=mid:" + "x" * 5000,
    "a=group:BUNDLE 0 1 2 3",
    "a=extmap:999999 urn:x",
    "a=extmap:x",
    "a=msid:",
    "a=rtcp:notanumber",
    "a=sctp-port:x",
    "a=max-message-size:-1",
    "c=IN IP4",
    "c=IN IP6 ::1",
    "o=- x y IN IP4 127.0.0.1",
    "t=x y",
    "b=AS:notanumber",
    "a=sendonly",
    "a=inactive",
    "a=sendrecv",
    "\x00\x01\x02",
    "a=名字:值",
    "",
]


@st.composite
def mutated_offers(draw: st.DrawFn) -> bytes:
    lines = offer().splitlines()
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["drop", "dup", "insert", "replace_value", "swap", "truncate"]))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if not lines:
            break
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 50))
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(HOSTILE_LINES)))
        elif op == "replace_value":
            key, sep, _ = lines[i].partition(":") if ":" in lines[i] else lines[i].partition("=")
            lines[i] = key + (sep or "=") + draw(st.text(max_size=40))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines = lines[:i]
    sep = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return sep.join(lines).encode("utf-8", "surrogatepass") + sep.encode()


@pytest.fixture
def live(sim_factory, gateway_factory) -> Any:
    sim = sim_factory(*small_sim_args(BASE, fps=10, gop=10))
    cam = sim.cameras[0]
    gw = gateway_factory(
        {
            "cameras": [{"id": "cam-01", "rtsp_url": cam["rtsp_main"]}],
            "relay": {"interfaces": ["127.0.0.1"], "source_wait_s": 8},
            "streams": {"linger_s": 60},
            "discovery": {"interval_s": 0},
        }
    )
    return gw


def _post(gw: Any, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    r = gw.client.post(URL, content=body, headers=headers or SDP)
    assert r.status_code < 500, f"{r.status_code} for an offer: {r.text[:300]}"
    if r.status_code == 201:
        location = r.headers["location"]
        assert gw.client.delete(location).status_code == 200
    else:
        assert r.status_code in (400, 413, 415, 422), r.text[:300]
        detail = r.json().get("detail")
        assert isinstance(detail, str) and len(detail) > 5, r.text[:300]
    return r


def _assert_healthy(gw: Any) -> None:
    assert gw.popen.poll() is None, gw.tail()
    assert gw.client.get("/api/v1/health").status_code == 200
    assert _post(gw, offer().encode()).status_code == 201
    log = gw.log_path.read_text("utf-8", "replace")
    assert "Traceback" not in log, log[-3000:]
    assert not re.search(r"Exception in callback|exception was never retrieved", log), log[-3000:]


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_whep_rejects_garbage_and_mutated_offers_clearly(live: Any) -> None:
    gw = live
    # The camera must be streaming so that offers which pass parsing reach the answerer.
    assert _post(gw, offer().encode()).status_code == 201
    codes: dict[int, int] = {}

    @FUZZ
    @given(
        st.one_of(
            st.binary(max_size=600),
            st.text(max_size=300).map(lambda s: ("v=0\r\n" + s).encode("utf-8", "surrogatepass")),
            mutated_offers(),
        )
    )
    def fuzz(body: bytes) -> None:
        r = _post(gw, body)
        codes[r.status_code] = codes.get(r.status_code, 0) + 1

    fuzz()
    print("WHEP fuzz status codes:", codes)
    # Mutations that keep the offer usable are answered; the rest are 400s.
    assert codes.get(400, 0) > 10, codes
    _assert_healthy(gw)


def test_whep_hostile_headers_and_patches(live: Any) -> None:
    gw = live
    for headers in (
        {"Content-Type": "application/sdp; charset=\x7f"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/sdp;;;;=;"},
    ):
        r = gw.client.post(URL, content=offer().encode(), headers=headers)
        assert r.status_code < 500, r.text
    # A Content-Length that lies (httpx refuses to send one): raw socket.
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.token}\r\n"
        "Content-Type: application/sdp\r\nContent-Length: 99999999999999999999\r\n\r\nv=0\r\n"
    )
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        sock.sendall(head.encode())
        status_line = sock.recv(200).split(b"\r\n", 1)[0]
    assert re.match(rb"HTTP/1.1 4\d\d", status_line), status_line
    r = gw.client.post(URL, content=offer().encode(), headers=SDP)
    assert r.status_code == 201
    location = r.headers["location"]
    frag = {"Content-Type": "application/trickle-ice-sdpfrag"}

    @FUZZ
    @given(
        st.one_of(
            st.binary(max_size=300),
            st.lists(
                st.sampled_from([*HOSTILE_LINES, "a=ice-ufrag:x", "a=ice-pwd:y"]), max_size=6
            ).map(lambda ls: "\r\n".join(ls).encode("utf-8", "surrogatepass")),
        )
    )
    def fuzz(body: bytes) -> None:
        r = gw.client.patch(location, content=body, headers=frag)
        assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
        if r.status_code != 204:
            assert r.status_code in (400, 404, 412, 413, 415, 422), r.text[:300]

    fuzz()
    gw.client.delete(location)
    _assert_healthy(gw)
