"""H.264/H.265 bitstream helpers: Annex B splitting, AVCC conversion, parameter sets.

Browsers (through aiortc) and our muxers need Annex B with the parameter sets in
front of every keyframe. Cameras deliver them in-band, only in the SDP (then FFmpeg
puts them in ``extradata``), or, from MP4-style sources, length-prefixed (AVCC).
Everything here is pure bytes work, cheap enough for every access unit.
"""

from __future__ import annotations

START = b"\x00\x00\x00\x01"

# NAL unit types that matter here.
H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
HEVC_VPS = 32
HEVC_SPS = 33
HEVC_PPS = 34
HEVC_AUD = 35


def is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(START)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units (without start codes) of an Annex B byte string."""
    nals: list[bytes] = []
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    if i < 0:
        return [data] if data else []
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = n if j < 0 else j
        # A 4-byte start code leaves a trailing zero on the previous unit.
        nal = data[start:end]
        if j >= 0 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
        i = j
    return nals


def join_annexb(nals: list[bytes]) -> bytes:
    return b"".join(START + nal for nal in nals)


def avcc_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """Length-prefixed NAL units (MP4 style) to Annex B. Raises ValueError if malformed."""
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


def nal_type(codec: str, nal: bytes) -> int:
    if not nal:
        return -1
    if codec == "hevc":
        return (nal[0] >> 1) & 0x3F
    return nal[0] & 0x1F


def is_vcl(codec: str, t: int) -> bool:
    """Whether a NAL type carries picture data (a slice)."""
    if codec == "hevc":
        return 0 <= t <= 31
    return 1 <= t <= 5


def is_irap(codec: str, t: int) -> bool:
    """Whether a NAL type starts a decodable picture (IDR / IRAP)."""
    if codec == "hevc":
        return 16 <= t <= 23
    return t == H264_IDR


def parameter_set_types(codec: str) -> tuple[int, ...]:
    return (HEVC_VPS, HEVC_SPS, HEVC_PPS) if codec == "hevc" else (H264_SPS, H264_PPS)


def extradata_parameter_sets(codec: str, extradata: bytes) -> list[bytes]:
    """SPS/PPS (and VPS for H.265) from codec extradata, Annex B or avcC/hvcC."""
    if not extradata:
        return []
    wanted = parameter_set_types(codec)
    if is_annexb(extradata):
        nals = split_annexb(extradata)
    elif codec == "h264" and extradata[0] == 1:
        nals = _parse_avcc_config(extradata)
    elif codec == "hevc" and len(extradata) > 22 and extradata[0] == 1:
        nals = _parse_hvcc_config(extradata)
    else:
        return []
    return [nal for nal in nals if nal_type(codec, nal) in wanted]


def _parse_avcc_config(buf: bytes) -> list[bytes]:
    nals: list[bytes] = []
    try:
        i = 5
        for mask in (0x1F, 0xFF):  # SPS count is 5 bits, PPS count a byte
            count = buf[i] & mask
            i += 1
            for _ in range(count):
                size = int.from_bytes(buf[i : i + 2], "big")
                nals.append(buf[i + 2 : i + 2 + size])
                i += 2 + size
    except IndexError:
        pass
    return [n for n in nals if n]


def _parse_hvcc_config(buf: bytes) -> list[bytes]:
    nals: list[bytes] = []
    try:
        arrays = buf[22]
        i = 23
        for _ in range(arrays):
            count = int.from_bytes(buf[i + 1 : i + 3], "big")
            i += 3
            for _ in range(count):
                size = int.from_bytes(buf[i : i + 2], "big")
                nals.append(buf[i + 2 : i + 2 + size])
                i += 2 + size
    except IndexError:
        pass
    return [n for n in nals if n]


class ParameterSets:
    """Keeps the latest parameter sets of a stream and puts them before keyframes.

    In-band sets win over extradata (a camera may change them mid-stream); extradata
    covers cameras that announce them only in the SDP.
    """

    def __init__(self, codec: str, extradata: bytes = b"") -> None:
        self.codec = codec
        self._types = parameter_set_types(codec)
        self._sets: dict[int, bytes] = {}
        for nal in extradata_parameter_sets(codec, extradata):
            self._sets[nal_type(codec, nal)] = nal
        self.inserted = 0

    def fix(self, data: bytes, keyframe: bool) -> bytes:
        """``data`` (Annex B) with any missing parameter sets put before a keyframe."""
        if self.codec not in ("h264", "hevc"):
            return data
        nals = split_annexb(data)
        present: set[int] = set()
        for nal in nals:
            t = nal_type(self.codec, nal)
            if t in self._types:
                self._sets[t] = nal
                present.add(t)
        if not keyframe:
            return data
        missing = [self._sets[t] for t in self._types if t not in present and t in self._sets]
        if not missing:
            return data
        self.inserted += 1
        # Keep an access unit delimiter first, as the standard wants.
        aud = H264_AUD if self.codec == "h264" else HEVC_AUD
        if nals and nal_type(self.codec, nals[0]) == aud:
            return join_annexb([nals[0], *missing, *nals[1:]])
        return join_annexb([*missing, *nals])
