"""The common currency between parts: encoded access units and stream facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded picture (all its NAL units), as it travels between parts.

    ``data`` is Annex B for H.264/H.265 (start codes, SPS/PPS before every
    keyframe) and a whole JPEG for MJPEG. ``pts``/``dts`` are in ``time_base``
    units and rise monotonically within one ``epoch``; a new epoch starts at every
    (re)connection of the ingest, when timestamps may jump or restart.
    ``wallclock`` is ``time.time()`` when the unit arrived at the first gateway that
    ingested it (carried unchanged through the cascade).
    """

    data: bytes
    pts: int
    dts: int | None
    time_base: Fraction
    keyframe: bool
    wallclock: float
    epoch: int = 0

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)


@dataclass(slots=True)
class StreamInfo:
    """Codec facts of one camera stream, published by the ingest."""

    codec: str  # "h264", "hevc", "mjpeg", ...
    width: int = 0
    height: int = 0
    fps: float = 0.0
    profile: str | None = None
    has_b_frames: bool = False
    gop: int | None = None  # frames between keyframes, measured
    extradata: bytes = b""
    bitrate_bps: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def passthrough_ok(self) -> bool:
        """Whether browsers can get this stream without transcoding."""
        return self.codec == "h264" and not self.has_b_frames
