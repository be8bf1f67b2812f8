"""Settings for the service around the video: HTTP, linkage, auth, MQTT, audit, export, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)

from gateway.config.base import Model


class ServerSettings(Model):
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


class LinkageMatch(Model):
    camera: str = Field(
        "*", title="Camera or subtree", description="Path, path prefix ending in /*, or *"
    )
    type: str = Field("motion", title="Event type")
    zone: str | None = Field(None, title="Zone name")


class LinkageRule(Model):
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


class AuthSettings(Model):
    enabled: bool = Field(True, title="Authentication required")
    session_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 86400, title="Session lifetime (s)")
    login_attempts_per_min: int = Field(10, ge=1, le=1000, title="Login attempts per minute")


class MqttSettings(Model):
    host: str | None = Field(None, title="Broker host (unset: no MQTT)")
    port: int = Field(1883, ge=1, le=65535, title="Broker port")
    username: str | None = Field(None, title="Broker user")
    password: SecretStr | None = Field(None, title="Broker password")
    topic_prefix: str = Field("gateway", title="Topic prefix")


class AuditSettings(Model):
    retention_days: float = Field(
        180,
        ge=1,
        le=3650,
        title="Keep audit entries (days) / 操作日志保留天数",
        description="Entries younger than a day are never removed",
    )


class ExportSettings(Model):
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


class LogSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", title="Log level")
    json_format: bool = Field(False, alias="json", title="JSON log lines")
