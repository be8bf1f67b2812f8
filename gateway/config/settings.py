"""The whole configuration, and loading it from YAML with environment overrides."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
)

from gateway.config.base import DEFAULT_CONFIG, ConfigError, Model
from gateway.config.cameras import CameraConfig, DiscoverySettings, StreamSettings
from gateway.config.cascade import CascadeSettings, Gb28181Settings
from gateway.config.relay import RelaySettings
from gateway.config.service import (
    AuditSettings,
    AuthSettings,
    ExportSettings,
    LinkageRule,
    LogSettings,
    MqttSettings,
    ServerSettings,
)
from gateway.config.video import (
    DiagnosisSettings,
    MotionSettings,
    RecordingSettings,
    ReportSettings,
    RetentionSettings,
)


class Settings(Model):
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
