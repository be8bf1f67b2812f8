"""The GB/T 28181 PS muxer and RTP packetiser: strict parsing, fuzzing, ffprobe."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.gb28181.ps.mux import (
    MAX_PES_PACKET_LENGTH,
    TS_MASK,
    PsMuxer,
    Timeline,
    crc32_mpeg,
    program_stream_map,
)
from gateway.gb28181.ps.rtp import RtpPacketizer, frame_rfc4571
from gateway.media.access_unit import AccessUnit
from tests.ps_support import ffprobe, mpeg_crc32, parse_ps, rtp_to_ps, split_rfc4571
from tests.rtsp_support import make_clip

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    codec=st.sampled_from(["h264", "hevc"]),
    data=st.one_of(
        st.binary(min_size=1, max_size=3000),
        st.integers(1, 200_000).map(lambda n: bytes(i * 7 % 251 for i in range(n))),
        st.lists(st.sampled_from([b"\x00\x00\x01", b"\x00\x00\x01\xba", b"\x00", b"\xe0"]),
                 min_size=1, max_size=200).map(b"".join),
    ),
    pts=st.integers(-(1 << 40), 1 << 40),
    delay=st.one_of(st.none(), st.integers(0, 90_000)),
    keyframe=st.booleans(),
)  # fmt: skip
def test_every_frame_parses_strictly_and_carries_its_bytes_and_times(
    codec: str, data: bytes, pts: int, delay: int | None, keyframe: bool
) -> None:
    dts = None if delay is None else pts - delay
    frame = PsMuxer(codec).mux_raw(data, pts, dts, keyframe)
    (read,) = parse_ps(frame.data)
    assert read.payload == data
    assert read.pts == pts & TS_MASK
    assert read.dts == (pts if dts is None else dts) & TS_MASK
    assert read.scr == read.dts
    assert all(length <= MAX_PES_PACKET_LENGTH for length in read.pes_lengths)
    assert len(read.pes_lengths) == max(1, -(-len(data) // (MAX_PES_PACKET_LENGTH - 13)))
    assert read.system_header is keyframe
    assert read.stream_type == ({"h264": 0x1B, "hevc": 0x24}[codec] if keyframe else None)


def test_psm_crc_is_mpeg2_crc32() -> None:
    psm = program_stream_map(0x24)
    assert crc32_mpeg(psm) == 0 == mpeg_crc32(psm)  # a correct CRC leaves a zero register
    assert crc32_mpeg(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value


def test_pts_wraps_at_33_bits() -> None:
    mux = PsMuxer("h264")
    near = (1 << 33) - 1800
    reads = [parse_ps(mux.mux_raw(b"\x00\x00\x01\x65x", near + i * 3600, None, i == 0).data)[0]
             for i in range(3)]  # fmt: skip
    assert [r.pts for r in reads] == [near, 1800, 5400]


def test_unsupported_codec_and_empty_unit_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="mjpeg"):
        PsMuxer("mjpeg")
    with pytest.raises(ValueError, match="empty"):
        PsMuxer("h264").mux_raw(b"", 0, None, True)


def _au(pts: int, epoch: int = 0, tb: Fraction = Fraction(1, 90000)) -> AccessUnit:
    return AccessUnit(b"\x00\x00\x01\x41x", pts, pts, tb, False, 0.0, epoch)


def test_timeline_stays_monotonic_across_reconnects_and_jumps() -> None:
    tl = Timeline()
    out = [tl.convert(a.pts, a.dts, a.time_base, a.epoch)[1] for a in (
        _au(0), _au(3600), _au(7200),
        _au(100, epoch=1), _au(3700, epoch=1),  # reconnect: time restarts
        _au(10**9, epoch=1),  # a leap far ahead
        _au(10**9 - 90_000 * 5, epoch=1),  # far back
        _au(10**9 - 90_000 * 5 - 100, epoch=1),  # sub-second jitter back: held
    )]  # fmt: skip
    assert out == sorted(out) and len(set(out[:7])) == 7
    assert [b - a for a, b in itertools.pairwise(out)][:6] == [3600] * 6
    assert tl.discontinuities == 3


def test_timeline_converts_time_bases_and_keeps_pts_dts_apart() -> None:
    tl = Timeline()
    pts, dts = tl.convert(2, 1, Fraction(1, 25), 0)
    assert (pts, dts) == (7200, 3600)


@FUZZ
@given(
    size=st.integers(0, 20_000),
    mtu=st.integers(64, 1500),
    ts=st.integers(0, 1 << 40),
    seq=st.integers(0, 0xFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
)
def test_rtp_packets_fit_the_mtu_share_a_timestamp_and_mark_the_last(
    size: int, mtu: int, ts: int, seq: int, ssrc: int
) -> None:
    payload = b"\x00\x00\x01\xba" + bytes(i % 256 for i in range(size))
    rtp = RtpPacketizer(ssrc, 96, mtu, seq=seq)
    packets = rtp.packetize(payload, ts)
    assert rtp_to_ps(packets, ssrc, mtu=mtu) == payload
    assert [p[1] >> 7 for p in packets] == [0] * (len(packets) - 1) + [1]
    assert {int.from_bytes(p[4:8], "big") for p in packets} == {ts & 0xFFFFFFFF}
    assert rtp.seq == (seq + len(packets)) & 0xFFFF
    framed = frame_rfc4571(packets)
    assert split_rfc4571(framed) == (packets, b"")
    assert split_rfc4571(framed[:-1])[0] == packets[:-1]


def test_rtp_rejects_out_of_range_parameters() -> None:
    for kwargs in ({"ssrc": 1 << 32}, {"ssrc": 1, "payload_type": 128}, {"ssrc": 1, "mtu": 20}):
        with pytest.raises(ValueError):
            RtpPacketizer(**kwargs)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_muxed_clip_reads_in_ffprobe_with_every_frame(codec: str, tmp_path: Path) -> None:
    bframes = codec == "h264"  # PTS != DTS on the wire as well
    clip = make_clip(codec, 320, 180, 25, 10, 30, bframes)
    mux = PsMuxer(codec)
    path = tmp_path / f"clip.{codec}.ps"
    with path.open("wb") as f:
        for data, pts, dts, key in clip.units:
            au = AccessUnit(data, pts, dts, Fraction(1, 90000), key, 0.0)
            f.write(mux.mux(au).data)
    probe = ffprobe(path)
    (stream,) = probe["streams"]
    assert stream["codec_name"] == codec
    assert (stream["width"], stream["height"]) == (320, 180)
    assert int(stream["nb_read_frames"]) == len(clip.units)
    packets = probe["packets"]
    assert len(packets) == len(clip.units)
    dts = [int(p["dts"]) for p in packets]
    pts = [int(p["pts"]) for p in packets]
    assert dts == sorted(dts) and len(set(dts)) == len(dts)
    assert sorted(pts) == [p for _, p, _, _ in sorted(clip.units, key=lambda u: u[1])]
    assert pts != sorted(pts) if bframes else pts == sorted(pts)
    assert packets[0]["flags"].startswith("K")


@FUZZ
@given(
    steps=st.lists(
        st.tuples(st.integers(-(1 << 34), 1 << 34), st.integers(0, 9000), st.integers(0, 3)),
        min_size=1,
        max_size=60,
    ),
    tb=st.sampled_from([Fraction(1, 90000), Fraction(1, 1000), Fraction(1, 25)]),
)
def test_timeline_never_goes_backwards_whatever_the_source_does(
    steps: list[tuple[int, int, int]], tb: Fraction
) -> None:
    tl = Timeline()
    last = None
    for dts, delay, epoch in steps:
        pts, out = tl.convert(dts + delay, dts, tb, epoch)
        assert pts >= out
        assert last is None or out >= last
        last = out
