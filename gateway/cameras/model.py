"""The camera record and the validated shapes used to create and change one."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.cameras.tls import normalize_fingerprint
from gateway.config import ID_PATTERN, CameraConfig, MotionSettings, RecordingSettings
from gateway.events.model import utcnow
from gateway.urls import strip_credentials

STATUSES = ("online", "offline", "unauthorised", "error")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")


def now_iso() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")


@dataclass
class Camera:
    """One camera known to this gateway. Never holds a password (see ``secrets``)."""

    id: str
    name: str = ""
    level: str = ""
    location: str = ""
    division: str = ""
    vendor: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    # {"host", "port", "username", "https", "tls_fingerprint", "tls_trust_self_signed"}
    onvif: dict[str, Any] | None = None
    rtsp_url: str | None = None  # without credentials
    sub_rtsp_url: str | None = None
    profiles: list[dict[str, Any]] = field(default_factory=list)
    main_profile: str | None = None
    sub_profile: str | None = None
    snapshot_uri: str | None = None  # without credentials
    ptz: bool = False
    status: str = "offline"
    reason: str = ""
    last_seen: str | None = None
    endpoint: str | None = None  # WS-Discovery endpoint reference
    discovery_seen: bool | None = None
    enabled: bool = True
    source: str = "api"  # api | config | discovery
    motion_settings: dict[str, Any] | None = None
    recording_settings: dict[str, Any] | None = None
    created: str = field(default_factory=now_iso)
    # Defaults from settings, set by the registry; not stored.
    defaults: tuple[MotionSettings, RecordingSettings] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def motion(self) -> MotionSettings:
        """This camera's motion settings, or the gateway's defaults."""
        if self.motion_settings is not None:
            return MotionSettings.model_validate(self.motion_settings)
        return self.defaults[0] if self.defaults else MotionSettings()

    @property
    def recording(self) -> RecordingSettings:
        """This camera's recording policy, or the gateway's defaults."""
        if self.recording_settings is not None:
            return RecordingSettings.model_validate(self.recording_settings)
        return self.defaults[1] if self.defaults else RecordingSettings()

    def profile(self, which: str = "main") -> dict[str, Any] | None:
        token = self.sub_profile if which == "sub" else self.main_profile
        for p in self.profiles:
            if p.get("token") == token:
                return p
        return None

    @property
    def codec(self) -> str | None:
        main = self.profile("main")
        return (main or {}).get("encoding") or None

    def record(self) -> dict[str, Any]:
        """The stored form (no defaults, no secrets)."""
        out = asdict(self)
        out.pop("defaults", None)
        return out

    def public(self) -> dict[str, Any]:
        """The redacted dict the API returns: no password, anywhere."""
        out = self.record()
        out.pop("motion_settings")
        out.pop("recording_settings")
        out["codec"] = self.codec
        out["motion"] = self.motion.model_dump(mode="json")
        out["recording"] = self.recording.model_dump(mode="json")
        out["motion_custom"] = self.motion_settings is not None
        out["recording_custom"] = self.recording_settings is not None
        return out

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Camera:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.pop("defaults", None)
        return cls(**known)


def check_host(host: str) -> str:
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise ValueError("not a host name or IP address")
    return host


def check_rtsp_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme.lower() not in ("rtsp", "rtsps"):
        raise ValueError("must start with rtsp:// or rtsps://")
    if not parts.hostname:
        raise ValueError("has no host")
    if any(c.isspace() for c in url) or len(url) > 2048:
        raise ValueError("contains spaces or is too long")
    return url


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnvifIn(_In):
    host: str = Field(min_length=1, max_length=253, description="Camera address")
    port: int = Field(80, ge=1, le=65535)
    username: str | None = Field(None, max_length=128)
    password: str | None = Field(None, max_length=256)
    https: bool = Field(False, description="ONVIF over HTTPS (the port is then often 443)")
    tls_fingerprint: str | None = Field(
        None, max_length=100, description="Accept only this certificate (SHA-256, hex)"
    )
    tls_trust_self_signed: bool = Field(
        False, description="Pin the certificate seen first (trust on first use)"
    )

    @field_validator("tls_fingerprint")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        return normalize_fingerprint(v) if v else None

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_host(v)


class OnvifPatch(_In):
    host: str | None = Field(None, min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535)
    username: str | None = Field(None, max_length=128)
    password: str | None = Field(None, max_length=256)
    https: bool | None = Field(None, description="ONVIF over HTTPS (the port is then often 443)")
    tls_fingerprint: str | None = Field(
        None, max_length=100, description="Accept only this certificate (SHA-256, hex)"
    )
    tls_trust_self_signed: bool | None = Field(
        None, description="Pin the certificate seen first (trust on first use)"
    )

    @field_validator("tls_fingerprint")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        return normalize_fingerprint(v) if v else None

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return check_host(v) if v is not None else v


class FieldError(ValueError):
    """A request that names a bad field; the API answers 422 with ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _settings(model: type[BaseModel], value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return model.model_validate(value).model_dump(mode="json")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(value)"
        raise ValueError(f"{where}: {first['msg']}") from None


class _Tags(_In):
    name: str | None = Field(None, max_length=128)
    level: str | None = Field(None, max_length=32)
    location: str | None = Field(None, max_length=256)
    division: str | None = Field(None, max_length=256)
    enabled: bool | None = None
    sub_rtsp_url: str | None = None
    motion: dict[str, Any] | None = None
    recording: dict[str, Any] | None = None

    @field_validator("sub_rtsp_url")
    @classmethod
    def _sub(cls, v: str | None) -> str | None:
        return check_rtsp_url(v) if v is not None else v

    @field_validator("motion")
    @classmethod
    def _motion(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _settings(MotionSettings, v)

    @field_validator("recording")
    @classmethod
    def _recording(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return _settings(RecordingSettings, v)


class CameraCreate(_Tags):
    """``POST /api/v1/cameras``: an ONVIF endpoint or a plain RTSP URL."""

    id: str | None = Field(None, pattern=ID_PATTERN)
    onvif: OnvifIn | None = None
    rtsp_url: str | None = None
    endpoint: str | None = Field(None, max_length=512)

    @field_validator("rtsp_url")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        return check_rtsp_url(v) if v is not None else v

    @model_validator(mode="after")
    def _one_source(self) -> CameraCreate:
        if (self.onvif is None) == (self.rtsp_url is None):
            raise ValueError("give exactly one of 'onvif' or 'rtsp_url'")
        return self


class CameraPatch(_Tags):
    """``PATCH /api/v1/cameras/{id}``: the fields sent change; null motion/recording resets."""

    onvif: OnvifPatch | None = None
    rtsp_url: str | None = None
    main_profile: str | None = Field(None, max_length=64)
    sub_profile: str | None = Field(None, max_length=64)

    @field_validator("rtsp_url")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        return check_rtsp_url(v) if v is not None else v


def slug(text: str) -> str:
    """A camera id from a name: ASCII letters and digits joined by '-', or ''."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return out if len(out) >= 2 and re.match(ID_PATTERN, out) else ""


def apply_config(cam: Camera, cfg: CameraConfig) -> tuple[str | None, str | None]:
    """Overlay a static camera's config on its record; returns (username, password)."""
    cam.source = "config"
    cam.name = cfg.name or cam.name or cfg.id
    cam.location = cfg.location or cam.location
    cam.division = cfg.division or cam.division
    cam.enabled = cfg.enabled
    if cfg.motion is not None:
        cam.motion_settings = cfg.motion.model_dump(mode="json")
    if cfg.recording is not None:
        cam.recording_settings = cfg.recording.model_dump(mode="json")
    if cfg.onvif is not None:
        old = cam.onvif or {}
        same = (old.get("host"), old.get("port")) == (cfg.onvif.host, cfg.onvif.port)
        pinned = cfg.onvif.tls_fingerprint
        learned = old.get("tls_fingerprint") if same and cfg.onvif.tls_trust_self_signed else None
        cam.onvif = {
            "host": cfg.onvif.host,
            "port": cfg.onvif.port,
            "username": cfg.onvif.username,
            "https": cfg.onvif.https,
            # A pin learned on first use stays across restarts while the endpoint is the same.
            "tls_fingerprint": normalize_fingerprint(pinned) if pinned else learned,
            "tls_trust_self_signed": cfg.onvif.tls_trust_self_signed,
        }
        cam.rtsp_url = cam.sub_rtsp_url = None
        password = cfg.onvif.password.get_secret_value() if cfg.onvif.password else None
        return cfg.onvif.username, password
    if cfg.rtsp_url is not None:
        url, user, password = strip_credentials(cfg.rtsp_url.get_secret_value())
        cam.onvif = None
        cam.rtsp_url = url
        if cfg.sub_rtsp_url is not None:
            cam.sub_rtsp_url = strip_credentials(cfg.sub_rtsp_url.get_secret_value())[0]
        return user, password
    return None, None


def apply_probe(cam: Camera, result: Any) -> None:
    """Store what an ONVIF probe (``onvif.ProbeResult``) read; main = largest, sub = smallest."""
    profiles = [p.public() for p in result.profiles]
    tokens = {p["token"] for p in profiles}
    by_size = sorted(profiles, key=lambda p: p["width"] * p["height"])
    cam.vendor = result.device.manufacturer
    cam.model = result.device.model
    cam.firmware = result.device.firmware
    cam.serial = result.device.serial
    cam.profiles = profiles
    cam.snapshot_uri = result.snapshot_uri
    cam.ptz = result.ptz
    # Keep an operator's choice while the profile still exists.
    if cam.main_profile not in tokens:
        cam.main_profile = by_size[-1]["token"] if by_size else None
    if cam.sub_profile not in tokens:
        cam.sub_profile = by_size[0]["token"] if by_size else None
