"""Settings for what is done with the pictures: motion, diagnosis, reports, recording, retention."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from gateway.config.base import Model

Unit = Annotated[float, Field(ge=0, le=1)]
Polygon = Annotated[list[tuple[Unit, Unit]], Field(min_length=3, max_length=256)]
ZoneName = Annotated[str, Field(pattern=r"^[^\x00-\x1f/]{1,64}$")]


class MotionSettings(Model):
    enabled: bool = Field(True, title="Motion detection on")
    source: Literal["gateway", "camera", "both"] = Field(
        "gateway",
        title="Who detects motion",
        description="gateway: decode the stream here; camera: the camera's own ONVIF events "
        "(camera_motion, tamper, input; nothing decoded here); both",
    )
    stream: Literal["sub", "main"] = Field("sub", title="Stream analysed")
    fps: float = Field(5.0, gt=0, le=30, title="Analysis frames per second")
    sensitivity: float = Field(0.5, ge=0, le=1, title="Sensitivity (0 low … 1 high)")
    min_area: float = Field(
        0.002, ge=0, le=1, title="Minimum area", description="Fraction of the picture"
    )
    zones: dict[ZoneName, Polygon] = Field(
        default_factory=dict,
        max_length=32,
        title="Detection zones",
        description="Name → polygon of (x, y) in 0..1 picture coordinates. Empty: whole picture",
    )
    masks: list[Polygon] = Field(
        default_factory=list,
        max_length=32,
        title="Masks",
        description="Polygons ignored by the detector (trees, flags, the clock overlay)",
    )
    start_after_s: float = Field(0.3, ge=0, le=30, title="Motion must last this long to start")
    end_after_s: float = Field(3.0, ge=0, le=300, title="Quiet time that ends an event")
    min_duration_s: float = Field(0.0, ge=0, le=300, title="Shortest event reported")
    cooldown_s: float = Field(2.0, ge=0, le=3600, title="Pause after an event ends")


class DiagnosisThresholds(Model):
    """Where each diagnosis kind starts (score 1.0); night values apply to grey (IR) pictures."""

    dark_luma: float = Field(40, ge=0, le=255, title="Too dark: mean luma below (day)")
    dark_luma_night: float = Field(18, ge=0, le=255, title="Too dark: mean luma below (night)")
    bright_luma: float = Field(215, ge=0, le=255, title="Too bright: mean luma above")
    bright_saturated: float = Field(
        0.5, ge=0, le=1, title="Too bright: fraction of saturated pixels above"
    )
    blur_ratio: float = Field(
        0.35,
        gt=0,
        le=1,
        title="Blur: sharpness below this fraction of the reference",
        description="Noise-corrected Laplacian energy per unit of contrast",
    )
    occlusion_area: float = Field(
        0.3, gt=0, le=1, title="Occlusion: fraction of the picture flattened"
    )
    cast_shift: float = Field(
        14, gt=0, le=128, title="Colour cast: chroma shift from the reference (levels)"
    )
    cast_absolute: float = Field(
        56, gt=0, le=128, title="Colour cast: chroma offset from grey with no reference (levels)"
    )
    noise_sigma: float = Field(6, gt=0, le=100, title="Noise: temporal sigma above (day)")
    noise_sigma_night: float = Field(9, gt=0, le=100, title="Noise: temporal sigma above (night)")
    frozen_equal: float = Field(
        0.97, gt=0, le=1, title="Frozen: fraction of pixels identical between samples"
    )
    scene_correlation: float = Field(
        0.55, ge=-1, le=1, title="Scene change: layout correlation with the reference below"
    )
    flat_fraction: float = Field(
        0.9, gt=0, le=1, title="Signal loss: fraction of the picture within ±3 levels of one value"
    )


DiagnosisKind = Literal[
    "signal_loss", "frozen", "occlusion", "too_dark", "too_bright", "blur", "colour_cast",
    "scene_change", "noise",
]  # fmt: skip


class DiagnosisCamera(Model):
    """Per-camera tuning of the video-quality diagnosis."""

    enabled: bool = Field(True, title="Diagnosis on for this camera")
    disabled_kinds: list[DiagnosisKind] = Field(default_factory=list, title="Kinds not checked")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        title="Threshold overrides",
        description="Field of diagnosis.thresholds → value, e.g. {dark_luma: 30}",
    )

    @field_validator("thresholds")
    @classmethod
    def _known_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DiagnosisThresholds.model_fields))
        if unknown:
            known = ", ".join(DiagnosisThresholds.model_fields)
            raise ValueError(f"unknown threshold(s) {unknown}; known: {known}")
        DiagnosisThresholds.model_validate(value)  # bounds
        return value


class DiagnosisSettings(Model):
    """Video-quality diagnosis (视频质量诊断) on the motion worker's decoded frames."""

    enabled: bool = Field(True, title="Diagnosis on")
    interval_s: float = Field(10, ge=0.2, le=3600, title="Seconds between diagnosis samples")
    raise_after: int = Field(2, ge=1, le=100, title="Samples over the threshold to raise a state")
    clear_after: int = Field(2, ge=1, le=100, title="Samples under the threshold to clear it")
    clear_ratio: float = Field(
        0.8, gt=0, le=1, title="Hysteresis: a state clears below this fraction of its threshold"
    )
    thresholds: DiagnosisThresholds = Field(default_factory=DiagnosisThresholds)
    cameras: dict[str, DiagnosisCamera] = Field(
        default_factory=dict, title="Per-camera tuning", description="Camera id → overrides"
    )

    def for_camera(self, camera_id: str) -> tuple[DiagnosisThresholds, DiagnosisCamera]:
        """The thresholds and switches that apply to one camera."""
        cam = self.cameras.get(camera_id) or DiagnosisCamera()
        merged = self.thresholds.model_dump() | cam.thresholds
        return DiagnosisThresholds.model_validate(merged), cam


class ReportSettings(Model):
    """Daily inspection reports (设备巡检): online rate, recording completeness, faults."""

    enabled: bool = Field(True, title="Inspection reports on")
    timezone: str = Field(
        "Asia/Shanghai", title="Time zone of the report day", description="IANA name"
    )
    run_at: str = Field(
        "00:10",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        title="Daily run (HH:MM, local)",
        description="When yesterday's report is made",
    )
    keep_days: int = Field(400, ge=1, le=3650, title="Keep reports this many days")
    min_gap_s: float = Field(
        2.0, ge=0, le=3600, title="Recording holes shorter than this are not gaps (s)"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like Asia/Shanghai"
            ) from None
        return value


class RecordingSettings(Model):
    mode: Literal["off", "continuous", "events", "both"] = Field("off", title="Recording mode")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    stream: Literal["main", "sub"] = Field("main", title="Stream recorded")
    segment_s: float = Field(60, ge=2, le=3600, title="Segment length (s)")
    pre_s: float = Field(5, ge=0, le=120, title="Pre-roll for event recording (s)")
    post_s: float = Field(10, ge=0, le=600, title="Post-roll for event recording (s)")


class RetentionSettings(Model):
    continuous_days: float = Field(7, ge=0, le=3650, title="Keep continuous footage (days)")
    event_days: float = Field(30, ge=0, le=3650, title="Keep event footage (days)")
    max_usage_percent: float = Field(90, gt=0, le=100, title="Disk usage that triggers eviction")
    min_free_mb: float = Field(1024, ge=0, le=10_000_000, title="Free space kept (MB)")
    check_interval_s: float = Field(30, gt=0, le=3600, title="Retention check period (s)")
    clip_cache_mb: float = Field(
        2048,
        ge=16,
        le=10_000_000,
        title="Clip cache (MB)",
        description="Playback clips kept for players; dropped before any footage is evicted",
    )
