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
    t_line: str = "0 0"  # Playback/Download: the span (see gateway.gb28181.playback)
    download_speed: float = 1.0  # Download: a=downloadspeed


def session_of(body: bytes) -> str:
    """The ``s=`` of an SDP body ("" if none): Play, Playback or Download."""
    for line in body[:MAX_SDP].decode("ascii", "replace").splitlines():
        if line.startswith("s="):
            return line[2:].strip()
    return ""


def parse_offer(body: bytes, sessions: tuple[str, ...] = ("Play",)) -> Offer:
    if len(body) > MAX_SDP:
        raise SdpError("SDP too large")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SdpError("SDP is not ASCII") from None
    session = host = proto = setup = ssrc = f_line = ""
    t_line, speed = "0 0", "1"
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
        elif key == "t":
            t_line = value
        elif key == "a" and value.startswith("downloadspeed:"):
            speed = value[14:].strip()
    match = [s for s in sessions if s.lower() == session.lower()]
    if not match:
        raise SdpError(f"session {session[:20]!r} not supported (only {'/'.join(sessions)})")
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
    try:
        download_speed = float(speed)
    except ValueError:
        raise SdpError(f"bad a=downloadspeed {speed[:20]!r}") from None
    return Offer(
        match[0], host, port, transport, int(ssrc), ssrc, f_line, pt, t_line, download_speed
    )


def answer(offer: Offer, *, device_id: str, host: str, port: int) -> bytes:
    proto = "RTP/AVP" if offer.transport == "udp" else "TCP/RTP/AVP"
    lines = [
        "v=0",
        f"o={device_id} 0 0 IN IP4 {host}",
        f"s={offer.session}",
        f"c=IN IP4 {host}",
        f"t={offer.t_line}",
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
