"""Parameter sets (SPS/PPS, and VPS for H.265): from extradata, and before every keyframe.

Browsers (through aiortc) and our muxers need Annex B with the parameter sets in
front of every keyframe. Cameras deliver them in-band, only in the SDP (then FFmpeg
puts them in ``extradata``), or, from MP4-style sources, in an ``avcC``/``hvcC`` record.
"""

from __future__ import annotations

from gateway.media.annexb import is_annexb, join_annexb, split_annexb
from gateway.media.h264 import avcc_record_units
from gateway.media.h265 import hvcc_record_units
from gateway.media.nal import NAL_CODECS, aud_type, nal_type, parameter_set_types


def extradata_parameter_sets(codec: str, extradata: bytes) -> list[bytes]:
    """SPS/PPS (and VPS for H.265) from codec extradata, Annex B or avcC/hvcC."""
    if not extradata:
        return []
    wanted = parameter_set_types(codec)
    if is_annexb(extradata):
        nals = split_annexb(extradata)
    elif codec == "h264" and extradata[0] == 1:
        nals = avcc_record_units(extradata)
    elif codec == "hevc" and len(extradata) > 22 and extradata[0] == 1:
        nals = hvcc_record_units(extradata)
    else:
        return []
    return [nal for nal in nals if nal_type(codec, nal) in wanted]


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

    @property
    def known(self) -> dict[int, bytes]:
        """The latest unit of each parameter set type seen, by NAL type."""
        return dict(self._sets)

    def fix(self, data: bytes, keyframe: bool) -> bytes:
        """``data`` (Annex B) with any missing parameter sets put before a keyframe."""
        if self.codec not in NAL_CODECS:
            return data
        nals = split_annexb(data)
        fixed = self.fix_nals(nals, keyframe)
        return data if fixed is nals else join_annexb(fixed)

    def fix_nals(self, nals: list[bytes], keyframe: bool) -> list[bytes]:
        """``nals`` (one access unit) with missing parameter sets put before a keyframe.

        Returns ``nals`` itself when nothing was missing. An access unit delimiter
        stays first, as the standard wants.
        """
        present: set[int] = set()
        for nal in nals:
            t = nal_type(self.codec, nal)
            if t in self._types:
                self._sets[t] = nal
                present.add(t)
        if not keyframe:
            return nals
        missing = [self._sets[t] for t in self._types if t not in present and t in self._sets]
        if not missing:
            return nals
        self.inserted += 1
        at = 1 if nals and nal_type(self.codec, nals[0]) == aud_type(self.codec) else 0
        return [*nals[:at], *missing, *nals[at:]]
