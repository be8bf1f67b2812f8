"""Settings for finding and reading cameras: discovery, static cameras, ingest."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
)

from gateway.config.base import Id, Model
from gateway.config.video import MotionSettings, RecordingSettings


class DiscoverySettings(Model):
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


class OnvifEndpoint(Model):
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


class CameraConfig(Model):
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


class StreamSettings(Model):
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
