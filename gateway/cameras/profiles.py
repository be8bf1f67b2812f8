"""What a camera is and offers, as the ONVIF client reports it: device info and profiles."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DeviceInfo:
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    clock_offset_s: float | None = None


@dataclass
class Profile:
    """One media profile: a stream the camera offers."""

    token: str
    name: str = ""
    encoding: str = ""
    width: int = 0
    height: int = 0
    fps: float | None = None
    gop: int | None = None
    bitrate_kbps: int | None = None
    stream_uri: str = ""
    ptz: bool = False
    service: str = "media"  # where it was read: "media" (ver10) or "media2" (ver20)

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeResult:
    device: DeviceInfo
    profiles: list[Profile] = field(default_factory=list)
    snapshot_uri: str | None = None
    ptz: bool = False
    services: dict[str, str] = field(default_factory=dict)  # namespace → XAddr


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def from_media1(p: Any) -> Profile | None:
    """A Media1 (ver10) GetProfiles entry as a :class:`Profile`; None for non-video ones."""
    token = getattr(p, "token", None)
    encoder = getattr(p, "VideoEncoderConfiguration", None)
    if not token or encoder is None:
        return None  # audio-only or metadata profiles: not a video stream
    fps = _get(encoder, "RateControl", "FrameRateLimit")
    bitrate = _get(encoder, "RateControl", "BitrateLimit")
    gop = _get(encoder, "H264", "GovLength") or _get(encoder, "MPEG4", "GovLength")
    return Profile(
        token=str(token)[:64],
        name=str(getattr(p, "Name", "") or "")[:128],
        encoding=str(getattr(encoder, "Encoding", "") or "")[:16],
        width=int(_get(encoder, "Resolution", "Width") or 0),
        height=int(_get(encoder, "Resolution", "Height") or 0),
        fps=float(fps) if fps else None,
        gop=int(gop) if gop else None,
        bitrate_kbps=int(bitrate) if bitrate else None,
        ptz=getattr(p, "PTZConfiguration", None) is not None,
    )
