"""The SDP of a GB/T 28181 INVITE (s=Play) and our answer.

GB SDP has two lines of its own: ``y=`` (the 10-digit SSRC, first digit 0 for live)
and ``f=`` (media format hints, echoed back).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.gb28181.media_api import Transport

MAX_SDP = 4096


class SdpError(ValueError):
    """An offer we cannot answer; ``str()`` is fit for a SIP reason phrase."""


@dataclass(frozen=True, slots=True)
class Offer:
    session: str  # Play, Playback, Download
    host: str
    port: int
    transport: Transport
    ssrc: int
    ssrc_text: str
    f_line: str
    payload_type: int


def parse_offer(body: bytes) -> Offer:
    if len(body) > MAX_SDP:
        raise SdpError("SDP too large")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SdpError("SDP is not ASCII") from None
    session = host = proto = setup = ssrc = f_line = ""
    port = -1
    payloads: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:].strip()
        if key == "s":
            session = value
        elif key == "c":
            parts = value.split()
            if len(parts) != 3 or parts[:2] != ["IN", "IP4"]:
                raise SdpError(f"unsupported c= line {value[:40]!r}")
            host = parts[2]
        elif key == "m" and value.startswith("video "):
            parts = value.split()
            if len(parts) < 4 or not parts[1].isdigit():
                raise SdpError(f"bad m= line {value[:40]!r}")
            port, proto, payloads = int(parts[1]), parts[2].upper(), parts[3:]
        elif key == "a" and value.startswith("setup:"):
            setup = value[6:].strip().lower()
        elif key == "y":
            ssrc = value
        elif key == "f":
            f_line = value
    if session.lower() != "play":
        raise SdpError(f"session {session[:20]!r} not supported (only Play)")
    if port < 0 or port > 65535:
        raise SdpError("no video media line")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise SdpError(f"bad connection address {host[:40]!r}") from None
    if not (ssrc.isdigit() and len(ssrc) <= 10 and int(ssrc) < 2**32):
        raise SdpError(f"bad y= SSRC {ssrc[:20]!r}")
    transport: Transport
    if proto == "RTP/AVP":
        transport = "udp"
    elif proto == "TCP/RTP/AVP":
        # a=setup:active means the platform connects to us; passive (the default) that we dial.
        transport = "tcp-listen" if setup == "active" else "tcp-connect"
    else:
        raise SdpError(f"media protocol {proto[:20]!r} not supported")
    if transport != "tcp-listen" and port == 0:
        raise SdpError("media port 0")
    pt = 96  # PS; a platform listing other payloads first still takes 96 when offered
    if "96" not in payloads and payloads and payloads[0].isdigit() and int(payloads[0]) < 128:
        pt = int(payloads[0])
    return Offer("Play", host, port, transport, int(ssrc), ssrc, f_line, pt)


def answer(offer: Offer, *, device_id: str, host: str, port: int) -> bytes:
    proto = "RTP/AVP" if offer.transport == "udp" else "TCP/RTP/AVP"
    lines = [
        "v=0",
        f"o={device_id} 0 0 IN IP4 {host}",
        "s=Play",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=video {port} {proto} {offer.payload_type}",
        "a=sendonly",
        f"a=rtpmap:{offer.payload_type} PS/90000",
    ]
    if offer.transport == "tcp-connect":
        lines += ["a=setup:active", "a=connection:new"]
    elif offer.transport == "tcp-listen":
        lines += ["a=setup:passive", "a=connection:new"]
    lines += [f"y={offer.ssrc_text}", f"f={offer.f_line}"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
