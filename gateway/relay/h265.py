"""H.265 over RTP (RFC 7798) for aiortc: a packetiser on aiortc's ``Encoder`` interface.

aiortc has no H.265 codec. Passthrough needs no encoder, only the payload format:
:class:`H265Encoder` packs Annex B access units (``av.Packet``) into RTP payloads and
refuses raw frames. It depends on aiortc's codec interface alone, so it could go
upstream as ``aiortc/codecs/h265.py``.

Payloads (RFC 7798 §4.4), without DONL (``sprop-max-don-diff`` is 0, the default):

* single NAL unit packets for NAL units that fit;
* aggregation packets (type 48) for runs of small NAL units — the VPS, SPS and PPS
  before a keyframe travel in one packet;
* fragmentation units (type 49) for NAL units larger than the packet budget.

Parameter sets: the last VPS/SPS/PPS seen are put before every IRAP picture that
arrives without them, so a viewer that joins on any keyframe can decode it.
"""

from __future__ import annotations

from collections.abc import Iterable

import av
from aiortc.codecs.base import Encoder
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase

from gateway.media.annexb import iter_nals
from gateway.media.h265 import NAL_HEADER_SIZE, is_irap, nal_type
from gateway.media.params import ParameterSets

PACKET_MAX = 1300  # as aiortc's H.264: room for SRTP, header extensions and TURN
FU_HEADER_SIZE = 1
LENGTH_SIZE = 2
TYPE_AP = 48
TYPE_FU = 49
TYPE_PACI = 50


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte string that have at least a whole header."""
    return [nal for nal in iter_nals(data) if len(nal) >= NAL_HEADER_SIZE]


def _ap_header(nals: list[bytes]) -> bytes:
    # F is the OR of the units' F bits; LayerId and TID the lowest of theirs (§4.4.2).
    forbidden = max(n[0] >> 7 for n in nals)
    layer = min(((n[0] & 0x01) << 5) | (n[1] >> 3) for n in nals)
    tid = min(n[1] & 0x07 for n in nals)
    return bytes(((forbidden << 7) | (TYPE_AP << 1) | (layer >> 5), ((layer & 0x1F) << 3) | tid))


def _fragment(nal: bytes, max_size: int) -> list[bytes]:
    header = bytes(((nal[0] & 0x81) | (TYPE_FU << 1), nal[1]))
    kind = nal_type(nal)
    body = memoryview(nal)[NAL_HEADER_SIZE:]
    room = max_size - NAL_HEADER_SIZE - FU_HEADER_SIZE
    # Even fragments (sizes differ by at most one byte): no tiny last packet.
    count = -(-len(body) // room)
    base, extra = divmod(len(body), count)
    out = []
    start = 0
    for k in range(count):
        end = start + base + (1 if k < extra else 0)
        flags = (0x80 if k == 0 else 0) | (0x40 if k == count - 1 else 0)
        out.append(header + bytes((flags | kind,)) + body[start:end])
        start = end
    return out


def packetize(nals: Iterable[bytes], max_size: int = PACKET_MAX) -> list[bytes]:
    """RTP payloads for one access unit's NAL units, each at most ``max_size`` bytes."""
    if max_size < NAL_HEADER_SIZE + FU_HEADER_SIZE + 1:
        raise ValueError(f"max_size {max_size} leaves no room for a fragment")
    out: list[bytes] = []
    group: list[bytes] = []
    group_size = NAL_HEADER_SIZE

    def flush() -> None:
        nonlocal group, group_size
        if len(group) == 1:
            out.append(group[0])
        elif group:
            out.append(_ap_header(group) + b"".join(len(n).to_bytes(2, "big") + n for n in group))
        group, group_size = [], NAL_HEADER_SIZE

    for nal in nals:
        if len(nal) < NAL_HEADER_SIZE:
            continue
        if len(nal) > max_size:
            flush()
            out.extend(_fragment(nal, max_size))
            continue
        if group_size + LENGTH_SIZE + len(nal) > max_size:
            flush()
        group.append(nal)
        group_size += LENGTH_SIZE + len(nal)
    flush()
    return out


def depacketize(payloads: Iterable[bytes]) -> list[bytes]:
    """The NAL units carried by RFC 7798 payloads (no DONL); ValueError if malformed."""
    nals: list[bytes] = []
    fu: bytearray | None = None
    for p in payloads:
        if len(p) < NAL_HEADER_SIZE:
            raise ValueError("RTP payload shorter than a NAL unit header")
        kind = nal_type(p)
        if kind == TYPE_AP:
            i = NAL_HEADER_SIZE
            while i < len(p):
                size = int.from_bytes(p[i : i + LENGTH_SIZE], "big")
                i += LENGTH_SIZE
                if size < NAL_HEADER_SIZE or i + size > len(p):
                    raise ValueError("aggregation packet unit runs past the payload")
                nals.append(bytes(p[i : i + size]))
                i += size
        elif kind == TYPE_FU:
            if len(p) < NAL_HEADER_SIZE + FU_HEADER_SIZE:
                raise ValueError("fragmentation unit without its FU header")
            flags = p[2]
            if flags & 0x80:
                fu = bytearray(((p[0] & 0x81) | ((flags & 0x3F) << 1), p[1]))
            elif fu is None:
                raise ValueError("fragmentation unit without its start")
            fu += p[3:]
            if flags & 0x40:
                nals.append(bytes(fu))
                fu = None
        elif kind == TYPE_PACI:
            raise ValueError("PACI packets are not supported")
        else:
            nals.append(bytes(p))
    if fu is not None:
        raise ValueError("fragmentation unit without its end")
    return nals


class H265Encoder(Encoder):
    """Packs H.265 access units (Annex B ``av.Packet``) as RFC 7798 RTP payloads."""

    def __init__(self, max_size: int = PACKET_MAX) -> None:
        self.max_size = max_size
        self.params = ParameterSets("hevc")

    @property
    def sets_inserted(self) -> int:
        """Keyframes that arrived without parameter sets and got the last ones seen."""
        return self.params.inserted

    def encode(
        self, frame: av.frame.Frame, force_keyframe: bool = False
    ) -> tuple[list[bytes], int]:
        raise NotImplementedError("H265Encoder only packs encoded access units (passthrough)")

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        assert packet.pts is not None and packet.time_base is not None
        timestamp = convert_timebase(packet.pts, packet.time_base, VIDEO_TIME_BASE)
        return self.payloads(bytes(packet)), timestamp

    def payloads(self, data: bytes) -> list[bytes]:
        """RTP payloads of one Annex B access unit."""
        return packetize(self.with_parameter_sets(split_annexb(data)), self.max_size)

    def with_parameter_sets(self, nals: list[bytes]) -> list[bytes]:
        """``nals`` with the last known VPS/SPS/PPS before an IRAP picture lacking them."""
        irap = any(is_irap(nal_type(nal)) for nal in nals)
        return self.params.fix_nals(nals, irap)
