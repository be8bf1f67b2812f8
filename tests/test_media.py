"""The codec layer (gateway.media): Annex B and AVCC, NAL types, parameter sets.

Known-answer cases for what streams, recorder, relay and GB/T 28181 rely on, round trips
over random NAL units, and every parser fed random bytes: none raises anything but the
documented ``ValueError`` of :func:`avcc_to_annexb`.
"""

from __future__ import annotations

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.media import h264, h265
from gateway.media.annexb import (
    avcc_to_annexb,
    is_annexb,
    iter_nals,
    join_annexb,
    looks_avcc,
    split_annexb,
)
from gateway.media.assembler import AccessUnitAssembler
from gateway.media.nal import (
    first_parameter_sets,
    is_irap,
    is_vcl,
    length_size,
    nal_type,
    nal_types,
    parameter_set_units,
    sniff_codec,
)
from gateway.media.params import ParameterSets, extradata_parameter_sets

SPS = b"\x67\x64\x00\x28\xac\xd9"
PPS = b"\x68\xef\x3c\xb0"
IDR = b"\x65\x88\x84\x21"
SLICE = b"\x41\x9a\x21"
AUD = b"\x09\xf0"
VPS5 = b"\x40\x01\x0c\x01\xff\xff"
SPS5 = b"\x42\x01\x01\x01\x60\x90"
PPS5 = b"\x44\x01\xc1\x72"
IDR5 = b"\x26\x01\xaf\x06"
TRAIL5 = b"\x02\x01\xd0\x09"


def avcc(*nals: bytes, size: int = 4) -> bytes:
    return b"".join(len(n).to_bytes(size, "big") + n for n in nals)


def test_annexb_splits_on_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    assert split_annexb(data) == [SPS, PPS, IDR]
    assert list(iter_nals(data)) == [SPS, PPS, IDR]
    assert is_annexb(data) and is_annexb(b"\x00\x00\x01\x65")
    assert not is_annexb(avcc(IDR))


def test_data_without_a_start_code_is_one_unit_to_split_and_none_to_iterate() -> None:
    assert split_annexb(IDR) == [IDR]
    assert split_annexb(b"") == []
    assert list(iter_nals(IDR)) == []


def test_avcc_converts_to_annexb_for_each_length_size() -> None:
    for size in (1, 2, 4):
        assert avcc_to_annexb(avcc(SPS, PPS, IDR, size=size), size) == join_annexb([SPS, PPS, IDR])
        assert looks_avcc(avcc(IDR, size=size), size)
    assert not looks_avcc(join_annexb([SPS, IDR]))


@pytest.mark.parametrize(
    "bad",
    [b"\x00\x00\x00", b"\x00\x00\x00\x00", b"\x00\x00\x00\x09\x65", avcc(IDR) + b"\x00"],
    ids=["truncated-length", "zero-length", "beyond-packet", "trailing-byte"],
)
def test_malformed_avcc_is_a_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        avcc_to_annexb(bad)


def test_nal_types_of_both_codecs() -> None:
    assert [nal_type("h264", n) for n in (SPS, PPS, IDR, SLICE, AUD)] == [7, 8, 5, 1, 9]
    assert [nal_type("hevc", n) for n in (VPS5, SPS5, PPS5, IDR5, TRAIL5)] == [32, 33, 34, 19, 1]
    assert nal_type("h264", b"") == -1 and nal_type("hevc", b"") == -1
    assert is_irap("h264", 5) and not is_irap("h264", 1) and is_vcl("h264", 1)
    assert is_irap("hevc", 19) and is_irap("hevc", 21) and not is_irap("hevc", 1)
    assert not is_vcl("hevc", h265.SPS) and not is_vcl("h264", h264.SPS)
    assert nal_types("hevc", join_annexb([VPS5, IDR5])) == {32, 19}


def test_profile_fields_are_read_from_the_first_sps() -> None:
    assert h264.profile_level_id(join_annexb([AUD, SPS, PPS, IDR])) == "640028"
    assert h264.profile_level_id(join_annexb([SLICE])) is None
    assert h265.profile_idc(join_annexb([VPS5, SPS5, PPS5])) == 1
    main10 = b"\x42\x01\x01\x02" + b"\x60"
    assert h265.profile_idc(join_annexb([main10])) == 2
    assert h265.profile_idc(join_annexb([IDR5])) is None


def test_codec_is_sniffed_from_the_first_parameter_set() -> None:
    assert sniff_codec(join_annexb([VPS5, SPS5, PPS5, IDR5])) == "hevc"
    assert sniff_codec(join_annexb([SPS, PPS, IDR])) == "h264"
    # 0x41 is an H.264 P slice and would read as an H.265 VPS type without the second byte.
    assert sniff_codec(join_annexb([SLICE])) is None


def test_parameter_sets_are_picked_from_avcc_and_hvcc_records() -> None:
    avcc_record = (
        bytes((1, 0x64, 0x00, 0x28, 0xFF, 0xE1))
        + len(SPS).to_bytes(2, "big")
        + SPS
        + b"\x01"
        + len(PPS).to_bytes(2, "big")
        + PPS
    )
    assert extradata_parameter_sets("h264", avcc_record) == [SPS, PPS]
    assert h264.avcc_length_size(avcc_record) == 4 and length_size("h264", avcc_record) == 4
    hvcc_record = bytearray(22) + bytes((3,))
    hvcc_record[0] = 1
    hvcc_record[21] = 0x01  # lengthSizeMinusOne 1: 2-byte lengths
    for unit in (VPS5, SPS5, PPS5):
        hvcc_record += bytes((0x80 | nal_type("hevc", unit),)) + b"\x00\x01"
        hvcc_record += len(unit).to_bytes(2, "big") + unit
    assert extradata_parameter_sets("hevc", bytes(hvcc_record)) == [VPS5, SPS5, PPS5]
    assert length_size("hevc", bytes(hvcc_record)) == 2
    assert length_size("mjpeg", avcc_record) == 4
    annexb = join_annexb([SPS, PPS])
    assert extradata_parameter_sets("h264", annexb) == [SPS, PPS]


def test_encoder_extradata_gives_the_parameter_sets_of_its_keyframes() -> None:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 64, 64, "yuv420p"
    ctx.options = {"x264-params": "repeat-headers=1"}
    frame = av.VideoFrame(64, 64, "yuv420p")
    frame.pts = 0
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    key = bytes(packets[0])
    assert first_parameter_sets("h264", split_annexb(key))[0] == parameter_set_units("h264", key)[0]
    assert sniff_codec(key) == "h264"


def test_parameter_sets_go_before_a_bare_keyframe_after_the_delimiter() -> None:
    params = ParameterSets("h264")
    first = join_annexb([SPS, PPS, IDR])
    assert params.fix(first, True) == first and params.inserted == 0
    assert params.fix(join_annexb([SLICE]), False) == join_annexb([SLICE])
    assert split_annexb(params.fix(join_annexb([AUD, IDR]), True)) == [AUD, SPS, PPS, IDR]
    assert params.inserted == 1
    assert params.known == {7: SPS, 8: PPS}


def test_newer_inband_parameter_sets_win_over_extradata() -> None:
    new_sps = SPS[:-1] + b"\x01"
    params = ParameterSets("h264", join_annexb([SPS, PPS]))
    params.fix(join_annexb([new_sps, PPS, IDR]), True)
    assert split_annexb(params.fix(join_annexb([IDR]), True)) == [new_sps, PPS, IDR]


def test_fix_nals_returns_the_same_list_when_nothing_is_missing() -> None:
    params = ParameterSets("hevc")
    nals = [VPS5, SPS5, PPS5, IDR5]
    assert params.fix_nals(nals, True) is nals
    assert params.fix_nals([IDR5], True) == nals
    assert params.fix_nals([TRAIL5], False) == [TRAIL5]


def test_first_parameter_sets_needs_every_type() -> None:
    assert first_parameter_sets("hevc", [VPS5, SPS5, IDR5]) == []
    later_sps = SPS5 + b"\x01"
    got = first_parameter_sets("hevc", [PPS5, SPS5, later_sps, VPS5])
    assert got == [VPS5, SPS5, PPS5]


# Emulation prevention keeps 00 00 00/01/02 out of a NAL unit, and a unit before another
# start code cannot end in a zero byte: such units survive Annex B unchanged.
nal_units = st.binary(min_size=1, max_size=64).filter(
    lambda b: b"\x00\x00" not in b and not b.endswith(b"\x00")
)


@settings(max_examples=300, deadline=None)
@given(st.lists(nal_units, min_size=1, max_size=8), st.sampled_from([1, 2, 4]))
def test_annexb_and_avcc_round_trip(nals: list[bytes], size: int) -> None:
    data = join_annexb(nals)
    assert split_annexb(data) == nals
    assert avcc_to_annexb(avcc(*nals, size=size), size) == data


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["h264", "hevc", "mjpeg"]))
def test_parsers_survive_random_bytes(data: bytes, codec: str) -> None:
    split_annexb(data)
    list(iter_nals(data))
    for size in (1, 2, 3, 4):
        try:
            converted = avcc_to_annexb(data, size)
        except ValueError:
            assert not looks_avcc(data, size)
        else:
            assert looks_avcc(data, size) and len(converted) >= len(data)
    extradata_parameter_sets(codec, data)
    extradata_parameter_sets(codec, b"\x01" + data)
    h264.avcc_record_units(data)
    h265.hvcc_record_units(data)
    h264.profile_level_id(data)
    h265.profile_idc(data)
    sniff_codec(data)
    length_size(codec, data)
    nal_types(codec, data)
    parameter_set_units(codec, data)
    first_parameter_sets(codec, split_annexb(data))
    ParameterSets(codec, data).fix(data, True)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=120), st.integers(0, 5), st.booleans()), max_size=12),
    st.sampled_from(["h264", "hevc", "mjpeg"]),
    st.booleans(),
)
def test_assembler_survives_random_packets(
    packets: list[tuple[bytes, int, bool]], codec: str, merge: bool
) -> None:
    asm = AccessUnitAssembler(codec, merge=merge)
    for data, pts, key in packets:
        for unit in asm.push(data, pts, pts, key):
            assert unit.data
    asm.flush()
