"""NAL unit questions for either codec, by its FFmpeg name (``"h264"`` or ``"hevc"``).

Any other codec name is answered as H.264, as the callers always did: they only ask
for the two NAL codecs.
"""

from __future__ import annotations

from gateway.media import h264, h265
from gateway.media.annexb import iter_nals

NAL_CODECS = ("h264", "hevc")


def nal_type(codec: str, nal: bytes) -> int:
    """The NAL unit type of ``nal``; -1 for an empty unit."""
    return h265.nal_type(nal) if codec == "hevc" else h264.nal_type(nal)


def is_vcl(codec: str, t: int) -> bool:
    """Whether a NAL type carries picture data (a slice)."""
    return h265.is_vcl(t) if codec == "hevc" else h264.is_vcl(t)


def is_irap(codec: str, t: int) -> bool:
    """Whether a NAL type starts a decodable picture (IDR / IRAP)."""
    return h265.is_irap(t) if codec == "hevc" else h264.is_irap(t)


def parameter_set_types(codec: str) -> tuple[int, ...]:
    """The NAL types of the parameter sets, in the order they go before a keyframe."""
    return h265.PARAMETER_SETS if codec == "hevc" else h264.PARAMETER_SETS


def sps_type(codec: str) -> int:
    """The NAL type of the sequence parameter set."""
    return h265.SPS if codec == "hevc" else h264.SPS


def aud_type(codec: str) -> int:
    """The NAL type of the access unit delimiter."""
    return h265.AUD if codec == "hevc" else h264.AUD


def nal_types(codec: str, data: bytes) -> set[int]:
    """The NAL unit types present in Annex B ``data``."""
    return {nal_type(codec, nal) for nal in iter_nals(data)}


def parameter_set_units(codec: str, data: bytes) -> list[bytes]:
    """The VPS/SPS/PPS units of Annex B ``data``, in stream order."""
    wanted = parameter_set_types(codec)
    return [nal for nal in iter_nals(data) if nal_type(codec, nal) in wanted]


def first_parameter_sets(codec: str, nals: list[bytes]) -> list[bytes]:
    """The first unit of each parameter set type in ``nals``, or [] when one is missing."""
    wanted = parameter_set_types(codec)
    found: dict[int, bytes] = {}
    for nal in nals:
        t = nal_type(codec, nal)
        if t in wanted:
            found.setdefault(t, nal)
    return [found[t] for t in wanted] if len(found) == len(wanted) else []


def sniff_codec(data: bytes) -> str | None:
    """``"hevc"`` or ``"h264"`` from the first parameter set in Annex B ``data``, or None.

    An H.265 parameter set header is two bytes with nuh_layer_id 0 and TemporalId 1
    (``40 01``, ``42 01``, ``44 01``); as H.264 those bytes would be types 0, 2 and 4,
    never a parameter set, so the two cannot be confused.
    """
    for nal in iter_nals(data):
        if len(nal) >= 2 and h265.nal_type(nal) in h265.PARAMETER_SETS and nal[1] == 1:
            return "hevc"
        if h264.nal_type(nal) in h264.PARAMETER_SETS:
            return "h264"
    return None


def length_size(codec: str, extradata: bytes) -> int:
    """The NAL length size of MP4-style packets whose codec record is ``extradata`` (else 4)."""
    size = None
    if codec == "h264":
        size = h264.avcc_length_size(extradata)
    elif codec == "hevc":
        size = h265.hvcc_length_size(extradata)
    return size or 4
