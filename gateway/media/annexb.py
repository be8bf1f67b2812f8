"""Annex B byte streams: start codes, NAL unit splitting, AVCC (length-prefixed) conversion.

Pure bytes work, cheap enough for every access unit. Nothing here raises on bad input
except :func:`avcc_to_annexb`, whose ``ValueError`` says the data is not AVCC.
"""

from __future__ import annotations

from collections.abc import Iterator

START = b"\x00\x00\x00\x01"
START3 = b"\x00\x00\x01"


def is_annexb(data: bytes) -> bool:
    """Whether ``data`` begins with a 3- or 4-byte start code."""
    return data.startswith(START3) or data.startswith(START)


def iter_nals(data: bytes) -> Iterator[bytes]:
    """The NAL units after each start code, start codes removed; nothing before the first.

    A 4-byte start code leaves a zero at the end of the unit before it: trailing zeros
    of a unit followed by another start code are dropped (``trailing_zero_8bits``).
    Empty units are skipped.
    """
    i = data.find(START3)
    while i >= 0:
        start = i + 3
        j = data.find(START3, start)
        if j < 0:
            nal = data[start:]
        else:
            nal = data[start:j]
            if nal.endswith(b"\x00"):
                nal = nal.rstrip(b"\x00")
        if nal:
            yield nal
        i = j


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte string; data without a start code is one unit."""
    if START3 not in data:
        return [data] if data else []
    return list(iter_nals(data))


def join_annexb(nals: list[bytes]) -> bytes:
    """NAL units to Annex B, each behind a 4-byte start code."""
    return b"".join(START + nal for nal in nals)


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Length-prefixed NAL units (MP4 style) to Annex B. Raises ValueError if malformed."""
    if not 1 <= length_size <= 4:
        raise ValueError(f"NAL length size {length_size} is not 1 to 4")
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        if i + length_size > n:
            raise ValueError("truncated NAL length")
        size = int.from_bytes(data[i : i + length_size], "big")
        i += length_size
        if size == 0 or i + size > n:
            raise ValueError("NAL length beyond the packet")
        out += START + data[i : i + size]
        i += size
    return bytes(out)


def looks_avcc(data: bytes, length_size: int = 4) -> bool:
    """Whether ``data`` parses exactly as length-prefixed NAL units."""
    try:
        avcc_to_annexb(data, length_size)
    except ValueError:
        return False
    return True


def sized_units(buf: bytes, i: int, count: int) -> tuple[list[bytes], int]:
    """``count`` units each behind a 2-byte big-endian size, from ``buf[i:]`` (the arrays of
    ``avcC``/``hvcC`` records); stops at the end of ``buf``. The units and the next offset."""
    units: list[bytes] = []
    for _ in range(count):
        if i >= len(buf):
            break
        size = int.from_bytes(buf[i : i + 2], "big")
        units.append(buf[i + 2 : i + 2 + size])
        i += 2 + size
    return units, i
