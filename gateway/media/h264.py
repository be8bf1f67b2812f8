"""H.264 (ITU-T H.264 / ISO 14496-10) facts: NAL unit types, SPS fields, the avcC record."""

from __future__ import annotations

from gateway.media.annexb import iter_nals, sized_units

SLICE = 1
IDR = 5
SEI = 6
SPS = 7
PPS = 8
AUD = 9
PARAMETER_SETS = (SPS, PPS)


def nal_type(nal: bytes) -> int:
    """``nal_unit_type`` (5 bits) of a NAL unit; -1 for an empty one."""
    return nal[0] & 0x1F if nal else -1


def is_vcl(t: int) -> bool:
    """Whether a NAL type carries picture data (a slice)."""
    return 1 <= t <= 5


def is_irap(t: int) -> bool:
    """Whether a NAL type starts a decodable picture (IDR)."""
    return t == IDR


def profile_level_id(data: bytes) -> str | None:
    """``profile-level-id`` (6 hex digits) from the first SPS in Annex B ``data``."""
    for nal in iter_nals(data):
        if len(nal) >= 4 and nal_type(nal) == SPS:
            return nal[1:4].hex()
    return None


def avcc_record_units(record: bytes) -> list[bytes]:
    """The SPS and PPS units of an ``avcC`` record (ISO 14496-15 §5.3.3); [] when short."""
    nals: list[bytes] = []
    try:
        i = 5
        for mask in (0x1F, 0xFF):  # SPS count is 5 bits, PPS count a byte
            count = record[i] & mask
            i += 1
            units, i = sized_units(record, i, count)
            nals += units
    except IndexError:
        pass
    return [n for n in nals if n]


def avcc_length_size(record: bytes) -> int | None:
    """The NAL length size (1, 2 or 4) an ``avcC`` record announces, None if not one."""
    if len(record) > 4 and record[0] == 1:
        return (record[4] & 3) + 1
    return None
