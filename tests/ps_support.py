"""A strict reader of what the GB/T 28181 PS sender emits, for tests.

Independent of gateway.gb28181.ps: it parses program streams (H.222.0 §2.5) and
RTP (RFC 3550, RFC 4571 framing) from the bytes alone and fails loudly on anything
out of order, so a muxer bug cannot be mirrored by a reader bug in the same module.
"""

from __future__ import annotations

import json
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TS_MASK = (1 << 33) - 1


def mpeg_crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ts(b: bytes, prefix: int) -> int:
    assert b[0] >> 4 == prefix, f"timestamp prefix {b[0] >> 4:#x}, expected {prefix:#x}"
    assert b[0] & 1 and b[2] & 1 and b[4] & 1, "timestamp marker bits"
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


@dataclass
class PsFrameRead:
    scr: int
    stream_type: int | None = None  # from the PSM, when there is one
    system_header: bool = False
    pts: int | None = None
    dts: int | None = None
    payload: bytes = b""
    pes_lengths: list[int] = field(default_factory=list)


def parse_ps(data: bytes) -> list[PsFrameRead]:
    """Frames (one per pack) of a program stream; AssertionError on any violation."""
    frames: list[PsFrameRead] = []
    pos, n = 0, len(data)
    while pos < n:
        assert data[pos : pos + 3] == b"\x00\x00\x01", f"no start code at {pos}"
        sid = data[pos + 3]
        if sid == 0xBA:
            h = data[pos : pos + 14]
            assert len(h) == 14 and h[4] >> 6 == 0b01, "MPEG-2 pack header"
            assert h[4] & 0x04 and h[6] & 0x04 and h[8] & 0x04 and h[9] & 0x01, "SCR markers"
            scr = (
                ((h[4] >> 3) & 0x07) << 30
                | (h[4] & 0x03) << 28
                | h[5] << 20
                | (h[6] >> 3) << 15
                | (h[6] & 0x03) << 13
                | h[7] << 5
                | h[8] >> 3
            )
            assert h[12] & 0x03 == 0x03, "mux rate markers"
            frames.append(PsFrameRead(scr=scr))
            pos += 14 + (h[13] & 0x07)
            continue
        assert frames, "data before the first pack header"
        frame = frames[-1]
        length = int.from_bytes(data[pos + 4 : pos + 6], "big")
        body = data[pos + 6 : pos + 6 + length]
        assert len(body) == length, f"packet {sid:#x} truncated"
        if sid == 0xBB:
            assert not frame.system_header and length >= 6 and body[0] & 0x80
            frame.system_header = True
        elif sid == 0xBC:
            assert mpeg_crc32(data[pos : pos + 6 + length]) == 0, "PSM CRC"
            info_len = int.from_bytes(body[2:4], "big")
            es_len = int.from_bytes(body[4 + info_len : 6 + info_len], "big")
            es = body[6 + info_len : 6 + info_len + es_len]
            assert len(es) == 4 and es[1] == 0xE0, f"one video stream expected, got {es.hex()}"
            frame.stream_type = es[0]
        elif sid == 0xE0:
            assert body[0] >> 6 == 0b10, "PES header '10'"
            flags, hlen = body[1] >> 6, body[2]
            ext = body[3 : 3 + hlen]
            if flags == 0b11:
                assert hlen == 10
                pts, dts = _ts(ext[0:5], 0x3), _ts(ext[5:10], 0x1)
            elif flags == 0b10:
                assert hlen == 5
                pts = dts = _ts(ext[0:5], 0x2)
            else:
                assert flags == 0 and frame.pes_lengths, "a frame's first PES needs a PTS"
                pts = dts = None
            if pts is not None:
                assert frame.pts is None, "two timestamps in one frame"
                frame.pts, frame.dts = pts, dts
            frame.pes_lengths.append(length)
            frame.payload += body[3 + hlen :]
        else:
            raise AssertionError(f"unexpected stream id {sid:#x}")
        pos += 6 + length
    return frames


@dataclass
class RtpRead:
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


def parse_rtp(packet: bytes) -> RtpRead:
    assert len(packet) >= 12 and packet[0] == 0x80, "RTP v2, no padding/extension/CSRC"
    b1, seq, ts, ssrc = struct.unpack("!BHII", packet[1:12])
    return RtpRead(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, packet[12:])


def split_rfc4571(stream: bytes) -> tuple[list[bytes], bytes]:
    """Complete length-prefixed packets, and the incomplete rest."""
    out, pos = [], 0
    while pos + 2 <= len(stream):
        size = int.from_bytes(stream[pos : pos + 2], "big")
        assert size >= 12, f"RFC 4571 length {size} too small for RTP"
        if pos + 2 + size > len(stream):
            break
        out.append(stream[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return out, stream[pos:]


def rtp_to_ps(packets: list[bytes], ssrc: int, pt: int = 96, mtu: int = 1400) -> bytes:
    """Check a run of RTP packets (sequence, one timestamp per frame, markers) → PS bytes."""
    out = bytearray()
    prev: RtpRead | None = None
    for raw in packets:
        assert len(raw) <= mtu, f"RTP packet of {len(raw)} bytes over the MTU"
        p = parse_rtp(raw)
        assert p.pt == pt and p.ssrc == ssrc
        if prev is not None:
            assert p.seq == (prev.seq + 1) & 0xFFFF, "RTP sequence gap"
            if not prev.marker:
                assert p.ts == prev.ts, "one timestamp per frame"
            else:
                assert p.payload.startswith(b"\x00\x00\x01\xba"), "a frame starts with a pack"
        out += p.payload
        prev = p
    return bytes(out)


def ffprobe(path: Path) -> dict:
    """``ffprobe -f mpeg`` of a PS file: the video stream and its packets (counts frames)."""
    res = subprocess.run(
        ["ffprobe", "-v", "error", "-f", "mpeg", "-count_frames", "-show_streams",
         "-show_entries", "packet=pts,dts,flags", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    out["errors"] = res.stderr
    return out
