"""MPEG-2 program stream (ISO/IEC 13818-1 §2.5) for GB/T 28181 live video.

One access unit in, one PS frame out: a pack header, then (on keyframes) a system
header and a program stream map (PSM), then the picture in PES packets of stream id
0xE0, the first of which carries its PTS/DTS. That is the layout GB/T 28181 annex C
asks for and what platforms (ZLMediaKit's demuxer, vendor NVRs) expect.

Why no library: FFmpeg's ``mpeg``/``vob``/``dvd`` muxers (which is what PyAV would
give us) write no PSM, cut the stream into 2048-byte packs holding parts of several
frames, and buffer inside the muxer, so a frame does not leave when it arrives and
there is no way to say "this RTP packet ends this picture". Stream type 0x24 (H.265)
would not be declared either. The format is a few fixed headers; writing it is less
code than steering a general muxer, and it is checked here against ffprobe, GStreamer
and a strict parser of our own (tests/test_gb_ps_mux.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from gateway.media.access_unit import AccessUnit

STREAM_TYPES = {"h264": 0x1B, "hevc": 0x24}  # H.222.0 table 2-34; GB/T 28181 annex C
VIDEO_STREAM_ID = 0xE0
PACK_START = b"\x00\x00\x01\xba"
SYSTEM_HEADER_START = b"\x00\x00\x01\xbb"
PSM_START = b"\x00\x00\x01\xbc"
CLOCK_HZ = 90_000
TS_MASK = (1 << 33) - 1  # PTS, DTS and SCR base are 33 bits and wrap
MAX_PES_PACKET_LENGTH = 0xFFFF  # the 16-bit PES_packet_length field
MUX_RATE = 50_000  # in units of 50 bytes/s (20 Mbit/s): an upper bound, not a promise
# Forward jumps larger than this (in 90 kHz ticks) are treated as a discontinuity.
MAX_GAP_90K = 10 * CLOCK_HZ


def _crc32_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc32_table()


def crc32_mpeg(data: bytes) -> int:
    """CRC-32/MPEG-2 (H.222.0 annex A): poly 0x04C11DB7, init all ones, no reflection."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


def pack_header(scr: int, mux_rate: int = MUX_RATE) -> bytes:
    """The 14-byte MPEG-2 pack header; ``scr`` is the 90 kHz SCR base (wrapped to 33 bits)."""
    scr &= TS_MASK
    if not 0 < mux_rate < 1 << 22:
        raise ValueError(f"mux rate {mux_rate} does not fit 22 bits")
    return PACK_START + bytes(
        (
            0x44 | ((scr >> 27) & 0x38) | ((scr >> 28) & 0x03),
            (scr >> 20) & 0xFF,
            0x04 | ((scr >> 12) & 0xF8) | ((scr >> 13) & 0x03),
            (scr >> 5) & 0xFF,
            0x04 | ((scr << 3) & 0xF8),  # SCR extension 0 (bits 8..7)
            0x01,  # SCR extension bits 6..0 = 0, marker
            (mux_rate >> 14) & 0xFF,
            (mux_rate >> 6) & 0xFF,
            ((mux_rate << 2) & 0xFC) | 0x03,
            0xF8,  # reserved, no stuffing
        )
    )


def system_header(rate_bound: int = MUX_RATE) -> bytes:
    """A system header declaring one video stream (0xE0) and no audio.

    Declaring audio that never comes makes ZLMediaKit wait for it past the play
    timeout (see GB28181.md), so only what is sent is declared.
    """
    body = bytes(
        (
            0x80 | ((rate_bound >> 15) & 0x7F),
            (rate_bound >> 7) & 0xFF,
            ((rate_bound << 1) & 0xFE) | 0x01,
            0x00,  # audio_bound 0, fixed_flag 0, CSPS_flag 0
            0xE1,  # audio/video lock, marker, video_bound 1
            0x7F,  # packet_rate_restriction 0, reserved
            VIDEO_STREAM_ID,
            0xE3,  # '11', buffer scale 1 (x1024 bytes), bound 0x3FF..
            0xFF,  # .. = 1023 KiB
        )
    )
    return SYSTEM_HEADER_START + len(body).to_bytes(2, "big") + body


def program_stream_map(stream_type: int, version: int = 0) -> bytes:
    """A PSM with one elementary stream (no descriptors), CRC included."""
    es_map = bytes((stream_type, VIDEO_STREAM_ID, 0x00, 0x00))
    body = (
        bytes((0xE0 | (version & 0x1F), 0xFF))  # current_next 1, reserved, version; marker
        + b"\x00\x00"  # program_stream_info_length
        + len(es_map).to_bytes(2, "big")
        + es_map
    )
    head = PSM_START + (len(body) + 4).to_bytes(2, "big") + body
    return head + crc32_mpeg(head).to_bytes(4, "big")


def encode_timestamp(prefix: int, ts: int) -> bytes:
    """A 5-byte PTS or DTS field: 4-bit ``prefix``, 33 bits of ``ts``, markers."""
    ts &= TS_MASK
    return bytes(
        (
            (prefix << 4) | ((ts >> 29) & 0x0E) | 0x01,
            (ts >> 22) & 0xFF,
            ((ts >> 14) & 0xFE) | 0x01,
            (ts >> 7) & 0xFF,
            ((ts << 1) & 0xFE) | 0x01,
        )
    )


def pes_packets(payload: bytes, pts: int, dts: int | None) -> list[bytes]:
    """``payload`` as video PES packets; PTS (and DTS if it differs) on the first only.

    Every packet fits the 16-bit PES_packet_length, so a large keyframe becomes
    several packets; the later ones have no timestamps, which demuxers read as
    "same picture, continued".
    """
    if dts is not None and (dts & TS_MASK) == (pts & TS_MASK):
        dts = None
    if dts is None:
        first_header = b"\x84\x80\x05" + encode_timestamp(0x2, pts)
    else:
        first_header = b"\x84\xc0\x0a" + encode_timestamp(0x3, pts) + encode_timestamp(0x1, dts)
    later_header = b"\x80\x00\x00"
    out: list[bytes] = []
    view = memoryview(payload)
    pos, n = 0, len(payload)
    while True:
        header = later_header if out else first_header
        room = MAX_PES_PACKET_LENGTH - len(header)
        chunk = view[pos : pos + room]
        length = len(header) + len(chunk)
        out.append(
            b"\x00\x00\x01"
            + bytes((VIDEO_STREAM_ID,))
            + length.to_bytes(2, "big")
            + header
            + chunk.tobytes()
        )
        pos += len(chunk)
        if pos >= n:
            return out


@dataclass(frozen=True, slots=True)
class PsFrame:
    """One access unit as program stream bytes, with its 90 kHz decode time (unwrapped)."""

    data: bytes
    timestamp: int  # 90 kHz, monotonic within one muxer; wrap it for RTP (32 bits)
    keyframe: bool


class Timeline:
    """Hub timestamps → one monotonic 90 kHz timeline across ingest epochs.

    An ingest reconnect starts a new epoch in which timestamps may restart or jump;
    a platform's demuxer would take that for a broken stream. Each discontinuity
    (new epoch, decode time going backwards or leaping ahead by more than
    ``MAX_GAP_90K``) is bridged by one frame interval.
    """

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._last_in = 0
        self._last_out: int | None = None
        self._offset = 0
        self._step = CLOCK_HZ // 25
        self.discontinuities = 0

    def convert(
        self, pts: int, dts: int | None, time_base: Fraction, epoch: int
    ) -> tuple[int, int]:
        """(pts, dts) in 90 kHz ticks on the output timeline (not yet wrapped)."""
        p = pts * time_base.numerator * CLOCK_HZ // time_base.denominator
        d = p if dts is None else dts * time_base.numerator * CLOCK_HZ // time_base.denominator
        if self._last_out is not None:
            jump = d - self._last_in
            if epoch != self._epoch or jump <= -CLOCK_HZ or jump > MAX_GAP_90K:
                self._offset = self._last_out + self._step - d
                self.discontinuities += 1
            elif jump > 0:
                self._step = jump
        self._epoch = epoch
        self._last_in = d
        out_p, out_d = p + self._offset, d + self._offset
        if self._last_out is not None and out_d < self._last_out:
            # Sub-second jitter backwards: hold the clock rather than step back.
            out_d = self._last_out
            out_p = max(out_p, out_d)
        self._last_out = out_d
        return out_p, out_d


class PsMuxer:
    """Access units of one H.264 or H.265 stream → PS frames (see the module docstring)."""

    def __init__(self, codec: str) -> None:
        if codec not in STREAM_TYPES:
            raise ValueError(
                f"codec {codec!r} cannot go into GB/T 28181 PS; expected one of "
                f"{sorted(STREAM_TYPES)}"
            )
        self.codec = codec
        self.stream_type = STREAM_TYPES[codec]
        self.timeline = Timeline()
        self._headers = system_header() + program_stream_map(self.stream_type)
        self.frames = 0
        self.bytes_out = 0

    def mux(self, au: AccessUnit) -> PsFrame:
        """One hub access unit (Annex B) as a PS frame."""
        pts, dts = self.timeline.convert(au.pts, au.dts, au.time_base, au.epoch)
        return self.mux_raw(au.data, pts, dts, au.keyframe)

    def mux_raw(self, data: bytes, pts: int, dts: int | None, keyframe: bool) -> PsFrame:
        """Annex B ``data`` with 90 kHz ``pts``/``dts`` (any integers: wrapped here)."""
        if not data:
            raise ValueError("empty access unit")
        decode = pts if dts is None else dts
        parts = [pack_header(decode)]
        if keyframe:
            parts.append(self._headers)
        parts.extend(pes_packets(data, pts, dts))
        frame = b"".join(parts)
        self.frames += 1
        self.bytes_out += len(frame)
        return PsFrame(frame, decode, keyframe)
