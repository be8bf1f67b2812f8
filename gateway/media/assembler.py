"""Demuxed packets → whole access units, Annex B, parameter sets before keyframes.

Some RTSP servers split one picture over several packets sharing a timestamp
(parameter sets, SEI and each slice apart). Muxers fail on repeated dts and WebRTC
needs whole pictures, so those pieces are merged here.

Waiting for the next packet to learn that a picture is complete would add a whole
frame interval of latency to every camera. So the assembler starts in *direct* mode:
NAL units without picture data (SPS, PPS, SEI, AUD) are held and prefixed to the next
picture, and a packet with picture data is emitted at once. The first time a second
packet with picture data arrives with the timestamp just emitted (a picture split
into slices), the assembler switches to *merge* mode for good: it holds the picture
until a packet with another timestamp arrives. The fragment that revealed the split
is dropped (counted in ``split_dropped``); this costs one picture once per camera.

Bounded: a camera that sends only non-picture data, or the same timestamp on every
packet, would otherwise grow the held bytes without end. Beyond :data:`MAX_PREFIX_BYTES`
of held non-picture data or :data:`MAX_UNIT_BYTES` in one picture, what is held is
dropped (counted in ``oversize_dropped``) and output resumes at the next keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.media.annexb import avcc_to_annexb, is_annexb, looks_avcc, split_annexb
from gateway.media.nal import is_irap, is_vcl, nal_type
from gateway.media.params import ParameterSets

# Parameter sets and SEI before one picture: a few KB in practice.
MAX_PREFIX_BYTES = 1024 * 1024
# One picture: an 8K intra frame at high quality stays well under this.
MAX_UNIT_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class Unit:
    """One assembled access unit, before it becomes an AccessUnit."""

    data: bytes
    pts: int
    dts: int | None
    keyframe: bool


class AccessUnitAssembler:
    """Turns the packets of one stream into access units (see the module docstring)."""

    def __init__(self, codec: str, extradata: bytes = b"", *, merge: bool = False) -> None:
        self.codec = codec
        self.nal_codec = codec in ("h264", "hevc")
        self.merge = merge
        self.params = ParameterSets(codec, extradata)
        self.split_dropped = 0
        self.oversize_dropped = 0
        self.merged = 0
        self.converted = 0
        self._prefix: list[bytes] = []  # non-picture data waiting for its picture
        self._prefix_bytes = 0
        self._need_key = False  # after a drop: nothing until the next keyframe
        self._pending: Unit | None = None  # merge mode: picture waiting for its end
        self._last_ts: tuple[int, int | None] | None = None

    def push(self, data: bytes, pts: int, dts: int | None, keyframe: bool) -> list[Unit]:
        """Feed one packet; return the access units it completes (zero, one or two)."""
        if not data:
            return []
        if self.nal_codec and not is_annexb(data) and looks_avcc(data):
            data = avcc_to_annexb(data)
            self.converted += 1
        if not self.nal_codec:
            return [self._finish(Unit(data, pts, dts, keyframe))]
        has_vcl, irap = self._scan(data)
        keyframe = keyframe or irap
        if self.merge:
            return self._gate(self._push_merge(data, pts, dts, keyframe))
        if not has_vcl:
            if self._prefix_bytes + len(data) > MAX_PREFIX_BYTES:
                # SEI/AUD floods: dropping them costs no picture (parameter sets are
                # put back before keyframes anyway).
                self.oversize_dropped += 1
                self._clear_prefix()
            self._prefix.append(data)
            self._prefix_bytes += len(data)
            return []
        if self._last_ts == (pts, dts):
            self.merge = True
            self.split_dropped += 1
            self._clear_prefix()
            return []
        self._last_ts = (pts, dts)
        if self._prefix:
            data = b"".join([*self._prefix, data])
            self._clear_prefix()
        return self._gate([self._finish(Unit(data, pts, dts, keyframe))])

    def flush(self) -> list[Unit]:
        """The held picture at the end of a session (merge mode), if any."""
        out: list[Unit] = []
        if self._pending is not None:
            out.append(self._finish(self._pending))
            self._pending = None
        self._clear_prefix()
        return self._gate(out)

    def _push_merge(self, data: bytes, pts: int, dts: int | None, keyframe: bool) -> list[Unit]:
        pending = self._pending
        if pending is not None and (pending.pts, pending.dts) == (pts, dts):
            if len(pending.data) + len(data) > MAX_UNIT_BYTES:
                self._pending = None
                self._drop()
                return []
            pending.data += data
            pending.keyframe = pending.keyframe or keyframe
            self.merged += 1
            return []
        self._pending = Unit(data, pts, dts, keyframe)
        return [self._finish(pending)] if pending is not None else []

    def _drop(self) -> None:
        """Held bytes beyond the bounds: let them go, and wait for a keyframe."""
        self.oversize_dropped += 1
        self._clear_prefix()
        self._need_key = True

    def _clear_prefix(self) -> None:
        self._prefix.clear()
        self._prefix_bytes = 0

    def _gate(self, units: list[Unit]) -> list[Unit]:
        """After a drop, pictures that depend on what was dropped are not emitted."""
        if not self._need_key:
            return units
        out = []
        for unit in units:
            if unit.keyframe:
                self._need_key = False
            if not self._need_key:
                out.append(unit)
        return out

    def _scan(self, data: bytes) -> tuple[bool, bool]:
        has_vcl = irap = False
        for nal in split_annexb(data):
            t = nal_type(self.codec, nal)
            if is_vcl(self.codec, t):
                has_vcl = True
                irap = irap or is_irap(self.codec, t)
        return has_vcl, irap

    def _finish(self, unit: Unit) -> Unit:
        unit.data = self.params.fix(unit.data, unit.keyframe)
        return unit
