"""RTP payload formats the simulated camera sends (H.264 RFC 6184, H.265 RFC 7798,
JPEG RFC 2435) and the SDP that describes them.

Payloads are cut once per access unit (``*_payloads``) and shared by every
session; each session only prefixes its own 12-byte header (:func:`header`).
"""

from __future__ import annotations

import base64
import secrets
import struct

from gateway.media import h264, h265
from gateway.sim.camera import SimProfile

MAX_PAYLOAD = 1400  # keeps UDP datagrams under a 1500-byte MTU
PT_DYNAMIC = 96
PT_JPEG = 26


def sdp(address: str, title: str, profile: SimProfile, sets: list[bytes]) -> str:
    """The SDP a DESCRIBE returns: one video track, control ``trackID=0``.

    ``sets`` are the SPS/PPS (H.264) or VPS/SPS/PPS (H.265) NAL units.
    """
    p = profile
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(1 << 31)} 1 IN IP4 {address}",
        f"s={title}",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
        "a=range:npt=0-",
    ]
    b64 = [base64.b64encode(s).decode() for s in sets]
    if p.encoding == "JPEG":
        lines += [f"m=video 0 RTP/AVP {PT_JPEG}", f"a=rtpmap:{PT_JPEG} JPEG/90000"]
    elif p.encoding == "H264":
        fmtp = "packetization-mode=1"
        if len(sets) == 2:
            fmtp += f";profile-level-id={sets[0][1:4].hex().upper()}"
            fmtp += f";sprop-parameter-sets={','.join(b64)}"
        lines += [f"m=video 0 RTP/AVP {PT_DYNAMIC}", f"a=rtpmap:{PT_DYNAMIC} H264/90000"]
        lines.append(f"a=fmtp:{PT_DYNAMIC} {fmtp}")
    else:
        lines += [f"m=video 0 RTP/AVP {PT_DYNAMIC}", f"a=rtpmap:{PT_DYNAMIC} H265/90000"]
        if len(sets) == 3:
            vps, sps, pps = b64
            lines.append(f"a=fmtp:{PT_DYNAMIC} sprop-vps={vps};sprop-sps={sps};sprop-pps={pps}")
    lines += [f"a=framerate:{p.fps}", f"a=x-dimensions:{p.width},{p.height}"]
    lines.append("a=control:trackID=0")
    return "\r\n".join(lines) + "\r\n"


def h264_payloads(nals: list[bytes], max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RFC 6184 packetization-mode 1: single NAL unit packets and FU-A fragments."""
    out: list[bytes] = []
    for nal in nals:
        if len(nal) <= max_payload:
            out.append(nal)
            continue
        indicator = (nal[0] & 0xE0) | 28
        nal_type = h264.nal_type(nal)
        body = nal[1:]
        step = max_payload - 2
        for off in range(0, len(body), step):
            start = 0x80 if off == 0 else 0
            end = 0x40 if off + step >= len(body) else 0
            out.append(bytes((indicator, start | end | nal_type)) + body[off : off + step])
    return out


def h265_payloads(nals: list[bytes], max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RFC 7798: single NAL unit packets and fragmentation units (type 49)."""
    out: list[bytes] = []
    for nal in nals:
        if len(nal) <= max_payload:
            out.append(nal)
            continue
        nal_type = h265.nal_type(nal)
        head = bytes(((nal[0] & 0x81) | (49 << 1), nal[1]))
        body = nal[2:]
        step = max_payload - 3
        for off in range(0, len(body), step):
            start = 0x80 if off == 0 else 0
            end = 0x40 if off + step >= len(body) else 0
            out.append(head + bytes((start | end | nal_type,)) + body[off : off + step])
    return out


def header(marker: bool, pt: int, seq: int, ts: int, ssrc: int) -> bytes:
    """A 12-byte RTP header (version 2, no CSRC, no extension)."""
    return struct.pack(
        "!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc
    )


def sender_report(ssrc: int, wall: float, rtp_ts: int, packets: int, octets: int) -> bytes:
    """An RTCP sender report (RFC 3550 §6.4.1) tying ``rtp_ts`` to wall time ``wall``."""
    ntp = wall + 2208988800  # NTP epoch is 1900
    sec = int(ntp)
    frac = int((ntp - sec) * (1 << 32)) & 0xFFFFFFFF
    return struct.pack(
        "!BBHIIIIII",
        0x80,
        200,
        6,
        ssrc,
        sec & 0xFFFFFFFF,
        frac,
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )


def jpeg_payloads(
    jpeg: bytes, width: int, height: int, max_payload: int = MAX_PAYLOAD
) -> list[bytes]:
    """RFC 2435 payloads of a baseline 4:2:0 JPEG with standard Huffman tables.

    Quantization tables travel in-band (Q=255) in the first packet of each frame.
    """
    if width > 2040 or height > 2040:
        raise ValueError("RTP/JPEG carries at most 2040×2040 pictures")
    tables: dict[int, bytes] = {}
    scan = b""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError("malformed JPEG: expected a marker")
        marker = jpeg[i + 1]
        seg_len = struct.unpack("!H", jpeg[i + 2 : i + 4])[0]
        seg = jpeg[i + 4 : i + 2 + seg_len]
        if marker == 0xDB:
            j = 0
            while j + 65 <= len(seg):
                if seg[j] >> 4:
                    raise ValueError("RTP/JPEG needs 8-bit quantization tables")
                tables[seg[j] & 0x0F] = seg[j + 1 : j + 65]
                j += 65
        elif marker == 0xDA:
            end = jpeg.rfind(b"\xff\xd9")
            scan = jpeg[i + 2 + seg_len : end if end > 0 else len(jpeg)]
            break
        i += 2 + seg_len
    if not scan or 0 not in tables:
        raise ValueError("JPEG without scan data or quantization table")
    qtables = tables[0] + tables.get(1, tables[0])
    qheader = struct.pack("!BBH", 0, 0, len(qtables)) + qtables
    out: list[bytes] = []
    off = 0
    while off < len(scan):
        extra = qheader if off == 0 else b""
        step = max_payload - 8 - len(extra)
        head = struct.pack("!I", off & 0xFFFFFF) + bytes((1, 255, width // 8, height // 8))
        out.append(head + extra + scan[off : off + step])
        off += step
    return out
