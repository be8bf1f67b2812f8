"""The RFC 7798 packetiser: what goes in comes back out, within the size budget.

Property tests (hypothesis) over random NAL units and packet budgets, plus the
cases a decoder depends on: parameter sets aggregated and put before keyframes,
fragment boundaries, and that aiortc offers H.265 only inside an answer's scope.
"""

from __future__ import annotations

from fractions import Fraction

import aiortc.rtcrtptransceiver as aiortc_transceiver
import av
from aiortc import RTCPeerConnection
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.media import h265
from gateway.media.h265 import nal_type
from gateway.relay import codecs
from gateway.relay import h265 as rtp_h265
from gateway.relay.h265 import H265Encoder, depacketize, packetize


def nal(kind: int, body: bytes, layer: int = 0, tid: int = 1) -> bytes:
    return bytes(((kind << 1) | (layer >> 5), ((layer & 0x1F) << 3) | tid)) + body


@st.composite
def nal_units(draw: st.DrawFn, max_body: int = 4000) -> bytes:
    # Types 48-63 are the payload format's own (AP, FU, PACI, ...): never in a stream.
    kind = draw(st.integers(0, 47))
    layer = draw(st.integers(0, 63))
    tid = draw(st.integers(1, 7))
    return nal(kind, draw(st.binary(min_size=0, max_size=max_body)), layer, tid)


@settings(max_examples=300, deadline=None)
@given(st.lists(nal_units(), min_size=1, max_size=12), st.integers(16, 1500))
def test_depacketised_nal_units_are_the_packetised_ones(nals: list[bytes], size: int) -> None:
    payloads = packetize(nals, size)
    assert all(len(p) <= size for p in payloads)
    assert depacketize(payloads) == nals


@settings(max_examples=100, deadline=None)
@given(nal_units(max_body=20000), st.integers(16, 1500))
def test_a_large_nal_unit_is_cut_into_fragments_marked_start_and_end(
    unit: bytes, size: int
) -> None:
    payloads = packetize([unit], size)
    if len(unit) <= size:
        assert payloads == [unit]
        return
    assert len(payloads) >= 2
    assert all(nal_type(p) == rtp_h265.TYPE_FU for p in payloads)
    assert all(p[2] & 0x3F == nal_type(unit) for p in payloads)
    starts = [bool(p[2] & 0x80) for p in payloads]
    ends = [bool(p[2] & 0x40) for p in payloads]
    assert starts == [True] + [False] * (len(payloads) - 1)
    assert ends == [False] * (len(payloads) - 1) + [True]
    # The payload header keeps the unit's F, LayerId and TID.
    assert all(p[0] & 0x81 == unit[0] & 0x81 and p[1] == unit[1] for p in payloads)
    assert b"".join(p[3:] for p in payloads) == unit[2:]
    # Even cuts: no fragment much smaller than the others.
    lengths = [len(p) for p in payloads]
    assert max(lengths) - min(lengths) <= 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=6))
def test_hostile_payloads_raise_value_error_or_parse(payloads: list[bytes]) -> None:
    try:
        nals = depacketize(payloads)
    except ValueError:
        return
    assert all(isinstance(n, bytes) and len(n) >= 2 for n in nals)


VPS = nal(h265.VPS, b"\x0c\x01\xff\xff" * 5)
SPS = nal(h265.SPS, b"\x01\x01\x60" * 12)
PPS = nal(h265.PPS, b"\xc1\x72\xb4")
IDR = nal(19, bytes(range(256)) * 20)  # IDR_W_RADL, about 5 kB
TRAIL = nal(1, b"\x26" * 300)


def test_parameter_sets_travel_in_one_aggregation_packet_before_the_keyframe() -> None:
    payloads = packetize([VPS, SPS, PPS, IDR])
    assert nal_type(payloads[0]) == rtp_h265.TYPE_AP
    assert depacketize(payloads[:1]) == [VPS, SPS, PPS]
    assert all(nal_type(p) == rtp_h265.TYPE_FU for p in payloads[1:])
    assert all(len(p) <= rtp_h265.PACKET_MAX for p in payloads)


def _packet(data: bytes, pts: int) -> av.Packet:
    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = Fraction(1, 90000)
    return packet


def annexb(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in nals)


def test_encoder_puts_the_last_parameter_sets_before_a_bare_keyframe() -> None:
    enc = H265Encoder()
    first, ts = enc.pack(_packet(annexb(VPS, SPS, PPS, IDR), 3000))
    assert ts == 3000
    assert depacketize(first) == [VPS, SPS, PPS, IDR]
    later, _ = enc.pack(_packet(annexb(TRAIL), 6000))
    assert depacketize(later) == [TRAIL], "no parameter sets before a non-keyframe"
    bare, _ = enc.pack(_packet(annexb(IDR), 9000))
    assert depacketize(bare) == [VPS, SPS, PPS, IDR]
    assert enc.sets_inserted == 1


def test_encoder_keeps_the_access_unit_delimiter_first() -> None:
    aud = nal(h265.AUD, b"\x50")
    enc = H265Encoder()
    enc.pack(_packet(annexb(VPS, SPS, PPS, IDR), 0))
    out, _ = enc.pack(_packet(annexb(aud, IDR), 3000))
    assert depacketize(out) == [aud, VPS, SPS, PPS, IDR]


async def test_aiortc_offers_h265_only_inside_an_answers_scope() -> None:
    extra = codecs.h265_codecs({"profile-id": "1"})
    with codecs.offering(extra):
        inside = [c.mimeType for c in aiortc_transceiver.get_capabilities("video").codecs]
    codecs.install()  # the look-ups stay patched: outside a scope they add nothing
    outside = [c.mimeType for c in aiortc_transceiver.get_capabilities("video").codecs]
    assert "video/H265" in inside
    assert "video/H265" not in outside
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        offer = await pc.createOffer()
        assert "H265" not in offer.sdp and "H264" in offer.sdp
    finally:
        await pc.close()
