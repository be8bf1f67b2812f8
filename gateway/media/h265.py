"""H.265 (ITU-T H.265) facts: NAL unit types, SPS fields, the hvcC record."""

from __future__ import annotations

from gateway.media.annexb import iter_nals, sized_units

VPS = 32
SPS = 33
PPS = 34
AUD = 35
PARAMETER_SETS = (VPS, SPS, PPS)
NAL_HEADER_SIZE = 2


def nal_type(nal: bytes) -> int:
    """``nal_unit_type`` (6 bits after the forbidden bit); -1 for an empty unit."""
    return (nal[0] >> 1) & 0x3F if nal else -1


def is_vcl(t: int) -> bool:
    """Whether a NAL type carries picture data (a slice segment)."""
    return 0 <= t <= 31


def is_irap(t: int) -> bool:
    """Whether a NAL type is an IRAP picture (BLA, IDR, CRA and the reserved 22-23)."""
    return 16 <= t <= 23


def profile_idc(data: bytes) -> int | None:
    """``general_profile_idc`` of the first SPS in Annex B ``data`` (1 Main, 2 Main 10)."""
    for nal in iter_nals(data):
        # header (2 bytes), then vps id / max sub-layers / nesting (1 byte), then
        # profile_space(2) tier(1) profile_idc(5); too early for emulation prevention.
        if len(nal) >= 4 and nal_type(nal) == SPS:
            return nal[3] & 0x1F
    return None


def hvcc_record_units(record: bytes) -> list[bytes]:
    """The NAL units of an ``hvcC`` record's arrays (ISO 14496-15 §8.3.3); [] when short."""
    nals: list[bytes] = []
    try:
        arrays = record[22]
        i = 23
        for _ in range(arrays):
            count = int.from_bytes(record[i + 1 : i + 3], "big")
            units, i = sized_units(record, i + 3, count)
            nals += units
    except IndexError:
        pass
    return [n for n in nals if n]


def hvcc_length_size(record: bytes) -> int | None:
    """The NAL length size (1, 2 or 4) an ``hvcC`` record announces, None if not one."""
    if len(record) > 21 and record[0] == 1:
        return (record[21] & 3) + 1
    return None
