"""The typed settings model, loaded from YAML with environment overrides.

Every field carries a title, a description and bounds, so the same models give the
JSON schema (``gateway config-schema``) and the error messages. A bad config stops
start-up with a :class:`ConfigError` that names the key path and the reason.

Environment overrides: ``GATEWAY__SECTION__KEY=value`` (double underscores separate
the path, values are parsed as YAML scalars), plus ``GATEWAY_DATA_DIR``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "gateway.yaml"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]


class ConfigError(Exception):
    """A configuration problem, with the key path and what to do about it."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ServerSettings(_Model):
    host: str = Field("127.0.0.1", title="Bind address", description="Address the HTTP API binds")
    port: int = Field(8080, ge=1, le=65535, title="HTTP port")
    public_url: str | None = Field(
        None, title="Public URL", description="How others reach this gateway (used in links)"
    )
    tls_cert: Path | None = Field(None, title="TLS certificate (PEM)")
    tls_key: Path | None = Field(None, title="TLS private key (PEM)")
    tls_self_signed: bool = Field(
        False,
        title="Serve HTTPS with a generated self-signed certificate",
        description="Used when tls_cert/tls_key are not set; children pin its fingerprint",
    )
    cors_origins: list[str] = Field(
        default_factory=list, title="CORS origins", description="Allowed cross-origin callers"
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, title="Largest request body accepted"
    )


class DiscoverySettings(_Model):
    interfaces: list[str] = Field(
        default_factory=list,
        title="Multicast interfaces",
        description="Interfaces (names or IPv4 addresses) that WS-Discovery multicasts on. "
        "Empty: no multicast at all, only unicast sweeps.",
    )
    ranges: list[str] = Field(
        default_factory=list,
        title="Unicast sweep ranges",
        description="CIDR ranges or single addresses probed by unicast WS-Discovery",
    )
    interval_s: float = Field(
        300, ge=0, le=86400, title="Re-discovery period (s)", description="0 turns it off"
    )
    timeout_s: float = Field(2.0, gt=0, le=60, title="Probe answer timeout (s)")
    concurrency: int = Field(256, ge=1, le=4096, title="Probes in flight at once")
    rate_per_s: float = Field(2000, gt=0, le=100000, title="Probes sent per second at most")
    port: int = Field(3702, ge=1, le=65535, title="WS-Discovery port")
    announcements: bool = Field(
        True,
        title="Listen for WS-Discovery Hello and Bye",
        description="On the multicast interfaces: learn at once of cameras appearing and leaving",
    )
    auto_add: bool = Field(False, title="Add discovered cameras to the registry automatically")
    username: str | None = Field(None, title="Default ONVIF user for discovered cameras")
    password: SecretStr | None = Field(None, title="Default ONVIF password")


# Motion polygons: (x, y) points in 0..1 picture coordinates (x right, y down).
Unit = Annotated[float, Field(ge=0, le=1)]
Polygon = Annotated[list[tuple[Unit, Unit]], Field(min_length=3, max_length=256)]
ZoneName = Annotated[str, Field(pattern=r"^[^\x00-\x1f/]{1,64}$")]


class MotionSettings(_Model):
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


class DiagnosisThresholds(_Model):
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


class DiagnosisCamera(_Model):
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


class DiagnosisSettings(_Model):
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


class ReportSettings(_Model):
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


class RecordingSettings(_Model):
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


class OnvifEndpoint(_Model):
    host: str = Field(title="ONVIF host")
    port: int = Field(80, ge=1, le=65535, title="ONVIF port")
    username: str | None = Field(None, title="ONVIF user")
    password: SecretStr | None = Field(None, title="ONVIF password")
    https: bool = Field(False, title="ONVIF over HTTPS")
    tls_fingerprint: str | None = Field(
        None,
        pattern=r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$",
        title="Camera certificate SHA-256 (pinned)",
    )
    tls_trust_self_signed: bool = Field(False, title="Pin the camera's certificate on first use")


class CameraConfig(_Model):
    id: Id = Field(title="Camera id", description="Unique at this gateway, e.g. cam-01")
    name: str = Field("", title="Display name")
    onvif: OnvifEndpoint | None = Field(None, title="ONVIF endpoint")
    rtsp_url: SecretStr | None = Field(None, title="Main stream RTSP URL (no ONVIF)")
    sub_rtsp_url: SecretStr | None = Field(None, title="Sub-stream RTSP URL (no ONVIF)")
    location: str = Field("", title="Location", description="Free text, e.g. 村口路口")
    division: str = Field("", title="Administrative division")
    enabled: bool = Field(True, title="Enabled")
    motion: MotionSettings | None = Field(None, title="Motion settings (default if absent)")
    recording: RecordingSettings | None = Field(None, title="Recording policy")


class StreamSettings(_Model):
    transport: Literal["tcp", "udp"] = Field("tcp", title="RTSP transport")
    open_timeout_s: float = Field(5, gt=0, le=60, title="RTSP open timeout (s)")
    read_timeout_s: float = Field(5, gt=0, le=60, title="RTSP read timeout (s)")
    stall_timeout_s: float = Field(
        4, gt=0, le=120, title="Watchdog", description="Reconnect when no packet for this long"
    )
    linger_s: float = Field(
        10, ge=0, le=3600, title="Keep the ingest this long after the last consumer leaves"
    )
    backoff_initial_s: float = Field(0.5, gt=0, le=10, title="First reconnect delay (s)")
    backoff_max_s: float = Field(10, gt=0, le=300, title="Longest reconnect delay (s)")
    subscriber_buffer: int = Field(
        240, ge=8, le=10000, title="Access units buffered per subscriber before dropping"
    )


class IceServer(_Model):
    urls: list[str] = Field(title="STUN/TURN URLs")
    username: str | None = Field(None, title="TURN user")
    credential: SecretStr | None = Field(None, title="TURN credential")


class SfuSettings(_Model):
    """An existing SFU (Janus's streaming plugin) that serves the viewers of ``relay``."""

    kind: Literal["janus"] = Field("janus", title="SFU kind", description="Janus 1.x, HTTP API")
    url: str = Field(
        title="Janus HTTP API URL",
        description="e.g. http://10.0.0.5:8088/janus",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
    )
    more_urls: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]] = Field(
        default_factory=list,
        title="Further Janus servers",
        description="Cameras are spread over all servers by a hash of their path; "
        "each camera is fed to one server (the next one if it is down)",
    )
    api_secret: SecretStr | None = Field(None, title="Janus api_secret (janus.jcfg)")
    admin_key: SecretStr | None = Field(
        None, title="Streaming plugin admin_key", description="Needed to create mountpoints"
    )
    rtp_host: str | None = Field(
        None,
        title="Where to send RTP",
        description="Janus's address as seen from this gateway (one server only); "
        "default: the URL's host",
    )
    srtp: bool = Field(
        True,
        title="Encrypt the feed to Janus (SRTP)",
        description="A fresh key per mountpoint, given to Janus over its API (use https)",
    )
    request_timeout_s: float = Field(
        5, gt=0, le=60, title="Janus request timeout (s)", description="Then: direct relay"
    )
    retry_s: float = Field(
        5, gt=0, le=600, title="Retry Janus after (s)", description="While down, viewers go direct"
    )
    linger_s: float = Field(
        10, ge=0, le=3600, title="Keep a camera's feed this long after its last viewer (s)"
    )


class WhipTarget(_Model):
    """A camera published to a WHIP server (RFC 9725): MediaMTX, LiveKit Ingress, …"""

    camera: str = Field(title="Camera id or path")
    url: str = Field(
        title="WHIP endpoint URL",
        description="e.g. http://mediamtx:8889/cam-01/whip",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
    )
    token: SecretStr | None = Field(None, title="Bearer token for the WHIP server")


class RelaySettings(_Model):
    ice_servers: list[IceServer] = Field(default_factory=list, title="ICE servers")
    interfaces: list[str] = Field(
        default_factory=list,
        title="Host-candidate interfaces",
        description="Addresses offered as host candidates; empty: all",
    )
    session_timeout_s: float = Field(
        30, gt=0, le=3600, title="Tear down a viewer after this long without ICE consent"
    )
    low_width: int = Field(640, ge=64, le=3840, title="Low variant width")
    low_height: int = Field(360, ge=64, le=2160, title="Low variant height")
    low_bitrate_kbps: int = Field(500, ge=50, le=20000, title="Low variant bitrate (kbit/s)")
    transcode_bitrate_kbps: int = Field(
        3000, ge=100, le=50000, title="Bitrate of transcoded full-size H.264 (kbit/s)"
    )
    max_sessions: int = Field(
        256, ge=1, le=10000, title="Most WHEP viewers at once", description="Beyond: HTTP 503"
    )
    source_wait_s: float = Field(
        4,
        gt=0,
        le=60,
        title="Wait for video before answering (s)",
        description="How long a new viewer waits for the camera's first keyframe before "
        "getting HTTP 503 (camera offline)",
    )
    burst_mbps: float = Field(
        32,
        gt=0,
        le=10000,
        title="Start-up burst rate (Mbit/s)",
        description="Pace of the cached GOP sent to a new viewer",
    )
    resolve_mdns: bool = Field(
        False,
        title="Resolve viewers' mDNS (.local) candidates",
        description="Off: such candidates are dropped (resolving them multicasts); "
        "browsers still connect through peer-reflexive candidates",
    )
    sfu: SfuSettings | None = Field(
        None,
        title="Serve viewers through an SFU (Janus)",
        description="Each watched camera is fed to the SFU once; viewers keep the WHEP URL",
    )
    whip_out: list[WhipTarget] = Field(
        default_factory=list,
        title="Publish cameras over WHIP",
        description="Each listed camera is published once to its WHIP server and kept up",
    )


class RetentionSettings(_Model):
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


class ParentSettings(_Model):
    url: str = Field(title="Parent URL", description="e.g. https://town.example:8443")
    token: SecretStr = Field(title="Token issued by the parent (gateway children add)")
    tls_fingerprint: str | None = Field(
        None, title="Pinned SHA-256 fingerprint of the parent's certificate"
    )


class CascadeSettings(_Model):
    level: Literal["city", "county", "town", "village", "site"] = Field(
        "site", title="Level in the tree"
    )
    id: Id = Field("gateway", title="This gateway's id", description="One path element")
    name: str = Field("", title="Display name, e.g. 城关镇")
    parent: ParentSettings | None = Field(None, title="Parent platform (上级平台)")
    heartbeat_s: float = Field(2, gt=0, le=300, title="Heartbeat period (s)")
    offline_after_s: float = Field(6, gt=0, le=3600, title="Child offline after this silence")


class LinkageMatch(_Model):
    camera: str = Field(
        "*", title="Camera or subtree", description="Path, path prefix ending in /*, or *"
    )
    type: str = Field("motion", title="Event type")
    zone: str | None = Field(None, title="Zone name")


class LinkageRule(_Model):
    name: str = Field(title="Rule (预案) name")
    match: LinkageMatch = Field(default_factory=LinkageMatch, title="When")
    cameras: list[str] = Field(default_factory=list, title="Linked cameras (paths)")
    wall: bool = Field(True, title="Show the group on the video wall")
    record_s: float = Field(60, ge=0, le=86400, title="Record the group this long (s)")
    report: bool = Field(True, title="Report the linkage upward")
    cooldown_s: float = Field(
        30, ge=0, le=86400, title="Cooldown (s)", description="Fire a rule at most once per period"
    )
    plan: str | None = Field(
        None, max_length=64, title="Plan (预案) to launch", description="A plan's name"
    )

    @model_validator(mode="after")
    def _does_something(self) -> LinkageRule:
        if not self.cameras and not self.plan:
            raise ValueError("cameras: at least one camera, or a plan to launch")
        return self


class AuthSettings(_Model):
    enabled: bool = Field(True, title="Authentication required")
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 86400, title="Session lifetime (s)")
    login_attempts_per_min: int = Field(10, ge=1, le=1000, title="Login attempts per minute")


class MqttSettings(_Model):
    host: str | None = Field(None, title="Broker host (unset: no MQTT)")
    port: int = Field(1883, ge=1, le=65535, title="Broker port")
    username: str | None = Field(None, title="Broker user")
    password: SecretStr | None = Field(None, title="Broker password")
    topic_prefix: str = Field("gateway", title="Topic prefix")


GB_ID = r"^\d{20}$"


class GbUpstream(_Model):
    """One GB/T 28181 upper platform (上级平台) this gateway registers to."""

    id: Id = Field(title="Local name of this upstream, e.g. county")
    enabled: bool = Field(True, title="Register to this platform")
    server_id: str = Field(pattern=GB_ID, title="上级平台编号 (server ID, 20 digits)")
    domain: str = Field(pattern=r"^\d{10}$", title="SIP 域 (SIP domain, 10 digits)")
    host: str = Field(min_length=1, max_length=253, title="Platform SIP address")
    port: int = Field(5060, ge=1, le=65535, title="Platform SIP port")
    transport: Literal["udp", "tcp"] = Field("udp", title="传输协议 (SIP transport)")
    device_id: str = Field(
        pattern=GB_ID,
        title="设备编号 (our ID for this platform, 20 digits)",
        description="Type digits 11-13: 200 platform (default) or 118 NVR",
    )
    password: SecretStr = Field(SecretStr(""), title="密码 (registration password)")
    local_port: int = Field(0, ge=0, le=65535, title="Our SIP port (0: any free port)")
    local_host: str = Field("0.0.0.0", title="Our SIP bind address")
    expires_s: int = Field(3600, ge=60, le=86400, title="Registration expiry (s)")
    keepalive_s: float = Field(60, ge=1, le=3600, title="Keepalive interval (s)")
    keepalive_misses: int = Field(3, ge=1, le=100, title="Missed keepalives before re-register")
    charset: Literal["gb2312", "gb18030", "utf-8"] = Field("gb2312", title="MANSCDP body charset")
    civil_code: str = Field(
        "", pattern=r"^(\d{2}|\d{4}|\d{6}|\d{8})?$", title="本级行政区划 (civil code)"
    )
    catalog_page: int = Field(1, ge=1, le=50, title="Catalog items per MESSAGE")
    share: list[Annotated[str, Field(min_length=1, max_length=640)]] = Field(
        default_factory=lambda: ["*"],
        max_length=1000,
        title="Shared cameras",
        description="Camera paths, or subtrees as village-1/*; * shares the whole tree",
    )

    @field_validator("device_id")
    @classmethod
    def _device_type(cls, value: str) -> str:
        if value[10:13] not in ("200", "118"):
            raise ValueError("type digits 11-13 must be 200 (platform) or 118 (NVR)")
        return value


class Gb28181Settings(_Model):
    """GB/T 28181: this gateway as a lower platform of county/city platforms (国标级联)."""

    upstream: list[GbUpstream] = Field(default_factory=list, title="Upper platforms")
    sip_t1_s: float = Field(0.5, gt=0, le=10, title="SIP timer T1 (s)")

    @field_validator("upstream")
    @classmethod
    def _unique_upstream(cls, ups: list[GbUpstream]) -> list[GbUpstream]:
        seen: set[str] = set()
        for up in ups:
            if up.id in seen:
                raise ValueError(f"upstream id {up.id!r} appears twice")
            seen.add(up.id)
        return ups


class AuditSettings(_Model):
    retention_days: float = Field(
        180,
        ge=1,
        le=3650,
        title="Keep audit entries (days) / 操作日志保留天数",
        description="Entries younger than a day are never removed",
    )


class ExportSettings(_Model):
    """Evidence export (录像导出): cameras × a time span → a signed ZIP of MP4 clips."""

    max_span_hours: float = Field(
        24,
        gt=0,
        le=24 * 31,
        title="Longest span of one export (hours) / 单次导出最长时段",
        description="A longer request is refused with a clear error",
    )
    max_cameras: int = Field(16, ge=1, le=256, title="Cameras in one export at most")
    max_mb: float = Field(
        4096,
        ge=1,
        le=10_000_000,
        title="Space for exports (MB) / 导出空间",
        description="All finished exports together; a job that would exceed it fails clearly",
    )


class LogSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", title="Log level")
    json_format: bool = Field(False, alias="json", title="JSON log lines")


class Settings(_Model):
    """The whole gateway configuration."""

    data_dir: Path = Field(Path("data"), title="Data directory (database, secrets, recordings)")
    server: ServerSettings = Field(default_factory=ServerSettings)
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings)
    cameras: list[CameraConfig] = Field(default_factory=list, title="Static cameras")
    streams: StreamSettings = Field(default_factory=StreamSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    motion: MotionSettings = Field(default_factory=MotionSettings, title="Motion defaults")
    diagnosis: DiagnosisSettings = Field(
        default_factory=DiagnosisSettings, title="Video-quality diagnosis"
    )
    reports: ReportSettings = Field(
        default_factory=ReportSettings, title="Inspection reports (巡检)"
    )
    recording: RecordingSettings = Field(
        default_factory=RecordingSettings, title="Recording defaults"
    )
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    cascade: CascadeSettings = Field(default_factory=CascadeSettings)
    linkage: list[LinkageRule] = Field(default_factory=list, title="Linkage rules (预案)")
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings, title="Audit log (操作日志)")
    export: ExportSettings = Field(
        default_factory=ExportSettings, title="Evidence export (录像导出)"
    )
    logging: LogSettings = Field(default_factory=LogSettings)
    gb28181: Gb28181Settings | None = Field(None, title="GB/T 28181 up-link (国标级联)")

    @field_validator("cameras")
    @classmethod
    def _unique_camera_ids(cls, cams: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for cam in cams:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} appears twice")
            seen.add(cam.id)
        return cams

    def camera_motion(self, cam: CameraConfig) -> MotionSettings:
        return cam.motion or self.motion

    def camera_recording(self, cam: CameraConfig) -> RecordingSettings:
        return cam.recording or self.recording


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {path}: {e['msg']}")
    return "\n".join(lines)


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def apply_env(tree: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Overlay ``GATEWAY__A__B=value`` variables (and ``GATEWAY_DATA_DIR``) onto a raw tree."""
    for name, raw in sorted(env.items()):
        if name == "GATEWAY_DATA_DIR":
            tree["data_dir"] = raw
            continue
        if not name.startswith("GATEWAY__"):
            continue
        path = [p.lower() for p in name[len("GATEWAY__") :].split("__") if p]
        if not path or not all(re.fullmatch(r"[a-z0-9_]+", p) for p in path):
            raise ConfigError(f"environment variable {name}: not a valid key path")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
    return tree


def parse_settings(tree: Any, source: str = "config") -> Settings:
    """Validate a raw tree; raise :class:`ConfigError` naming each bad key path."""
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    try:
        return Settings.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_settings(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> Settings:
    """Load the YAML at ``path`` (or ``GATEWAY_CONFIG``, or the embedded default)."""
    env = dict(os.environ) if env is None else env
    chosen = path or env.get("GATEWAY_CONFIG")
    file = Path(chosen) if chosen else DEFAULT_CONFIG
    tree: Any = {}
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read config {file}: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"config {file} is not UTF-8 text (byte {err.start}); save it as UTF-8"
            ) from None
        try:
            tree = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"config {file} is not valid YAML: {err}") from None
    elif chosen:
        raise ConfigError(f"config file {file} does not exist")
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"invalid configuration in {file}: the top level must be a mapping")
    apply_env(tree, env)
    return parse_settings(tree, str(file))
