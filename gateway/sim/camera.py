"""The simulated camera's identity and state, shared by its RTSP, ONVIF and WS-Discovery sides.

One :class:`SimCamera` per simulated device. The runner builds them; the RTSP
server (``rtsp_server``), the ONVIF SOAP/snapshot server (``onvif_server``) and
the WS-Discovery responder (``wsd_responder``) read from them. Mutable state
(``online``, ``fault``, ``motion``, ``ptz``) is changed only on the runner's
event loop (control API), so the servers can read it without locks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The faults the control API can inject; "online"/"offline" flip ``online``,
# the others set ``fault`` (see rtsp_server for what each one does on the wire).
FAULT_MODES = ("offline", "online", "stall", "garbage", "normal")
# Alarms the camera raises through ONVIF events besides motion (``set_alarm``).
ALARM_KINDS = ("tamper", "input")
# Picture faults (video-quality diagnosis): the stream runs, the picture is wrong.
PICTURE_MODES = ("normal", "cover", "freeze", "black", "blue", "dark")

_LOCATIONS = (
    "村口 Village gate",
    "学校门口 School gate",
    "主干道 Main road",
    "村委会 Village office",
    "桥头 Bridge",
    "集市 Market",
    "卫生室 Clinic",
    "停车场 Car park",
)


@dataclass
class SimProfile:
    """One media profile (ONVIF) = one RTSP stream of the camera."""

    token: str  # "profile_main" / "profile_sub"
    name: str  # "MainStream" / "SubStream"
    width: int
    height: int
    fps: int
    gop: int
    encoding: str  # "H264" | "H265" | "JPEG"
    bitrate_kbps: int
    rtsp_path: str  # "/main" or "/sub"
    bframes: bool = False


@dataclass
class SimCamera:
    """A simulated IP camera: identity, addresses, credentials, profiles and live state.

    ``online`` False means all its listeners refuse or close (offline fault).
    ``fault`` is "normal", "stall" (TCP stays open, nothing is sent) or
    "garbage" (junk bytes instead of RTSP replies and RTP).
    ``motion`` True makes the scripted object move across the scene.
    """

    index: int
    address: str
    http_port: int
    rtsp_port: int
    username: str = "admin"
    password: str = "admin"
    profiles: list[SimProfile] = field(default_factory=list)
    id: str = ""
    name: str = ""
    location: str = ""
    hardware: str = "SIM-IPC-2000"
    manufacturer: str = "GatewaySim"
    model: str = "SIM-IPC-2000"
    serial: str = ""
    firmware: str = "1.0.0"
    endpoint: str = ""
    online: bool = True
    fault: str = "normal"
    motion: bool = False
    rtsp_auth: str = "none"  # "none" | "basic" | "digest"
    max_sessions: int = 0  # RTSP sessions the camera accepts at once (0: no limit)
    ptz: dict[str, Any] = field(default_factory=dict)
    events: bool = True  # an ONVIF events service (PullPoint); False: none, as old cameras
    alarms: dict[str, bool] = field(default_factory=dict)  # kind (ALARM_KINDS) → raised
    media2: str = "off"  # ONVIF Media2: "off" | "on" | "h265-only" (H.265 only in Media2)
    # ONVIF clients as cameras need them: the SOAP versions answered ("1.2", "1.1" only,
    # or "both"); the camera's clock offset from true time (GetSystemDateAndTime and the
    # WS-Security check follow it); how far a UsernameToken's Created may be from that
    # clock; and whether UsernameTokens are taken at all (False: HTTP digest only).
    soap: str = "1.2"
    clock_offset_s: float = 0.0
    auth_window_s: float = 300.0
    ws_security: bool = True
    picture: str = "normal"  # one of PICTURE_MODES
    tls: Any = field(default=None, repr=False)  # ssl.SSLContext: ONVIF HTTP on TLS (--https)
    tls_fingerprint: str = ""  # SHA-256 of the served certificate, hex
    # Renders the current picture as JPEG; set by the runner (gateway.sim.source).
    snapshot_renderer: Callable[[SimCamera], bytes] | None = field(default=None, repr=False)
    # Called with (camera, what) after online/fault/motion change; the runner
    # uses it to close or reopen listeners.
    listeners: list[Callable[[SimCamera, str], None]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"cam-{self.index:02d}"
        if not self.name:
            self.name = f"模拟摄像机 Sim camera {self.index:02d}"
        if not self.location:
            self.location = _LOCATIONS[(self.index - 1) % len(_LOCATIONS)]
        if not self.serial:
            self.serial = f"SIM{self.index:06d}"
        if not self.endpoint:
            # Stable per index for a given base address, distinct across sims
            # that run on different bases at the same time.
            self.endpoint = "urn:uuid:" + str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"gateway-sim://{self.address}/{self.index}")
            )
        if not self.ptz:
            self.ptz = {
                "pan": 0.0,
                "tilt": 0.0,
                "zoom": 0.0,
                "moving": False,
                "presets": {"preset_1": {"name": "Home", "pan": 0.0, "tilt": 0.0, "zoom": 0.0}},
            }

    # -- addresses ---------------------------------------------------------

    def profile(self, token_or_path: str) -> SimProfile | None:
        """The profile with this token ("profile_main"), path ("/main") or short name ("main")."""
        key = token_or_path.strip()
        for p in self.profiles:
            if key in (p.token, p.rtsp_path, p.rtsp_path.lstrip("/")):
                return p
        return None

    def rtsp_url(self, profile_token_or_path: str) -> str:
        """``rtsp://address:port/main`` (no credentials) for a profile token or path."""
        p = self.profile(profile_token_or_path)
        path = p.rtsp_path if p else "/" + profile_token_or_path.lstrip("/")
        return f"rtsp://{self.address}:{self.rtsp_port}{path}"

    @property
    def http_scheme(self) -> str:
        """``https`` when the ONVIF side serves TLS (``--https``), else ``http``."""
        return "https" if self.tls is not None else "http"

    def onvif_url(self) -> str:
        """The ONVIF device service address."""
        return f"{self.http_scheme}://{self.address}:{self.http_port}/onvif/device_service"

    def snapshot_url(self) -> str:
        """The HTTP JPEG snapshot address served by the ONVIF side."""
        return f"{self.http_scheme}://{self.address}:{self.http_port}/snapshot.jpg"

    def snapshot_jpeg(self) -> bytes:
        """The current picture (main profile size) as JPEG, rendered on demand."""
        if self.snapshot_renderer is None:
            raise RuntimeError(f"{self.id}: no frame source attached")
        return self.snapshot_renderer(self)

    # -- state changes (call on the runner's loop) -------------------------

    def set_fault(self, mode: str) -> None:
        """Apply a fault mode from :data:`FAULT_MODES`; raises ValueError otherwise."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {FAULT_MODES}")
        if mode == "offline":
            self.online = False
        elif mode == "online":
            self.online = True
            self.fault = "normal"
        else:
            self.fault = mode
            if mode == "normal":
                self.online = True
        self._notify("fault")

    def set_motion(self, on: bool) -> None:
        """Start or stop the scripted moving object."""
        if self.motion != on:
            self.motion = on
            self._notify("motion")

    def set_alarm(self, kind: str, on: bool) -> None:
        """Raise or clear a tamper or digital-input alarm (sent as ONVIF events)."""
        if kind not in ALARM_KINDS:
            raise ValueError(f"unknown alarm {kind!r}; expected one of {ALARM_KINDS}")
        if self.alarms.get(kind, False) != on:
            self.alarms[kind] = on
            self._notify(f"alarm:{kind}")

    def set_picture(self, mode: str) -> None:
        """Apply a picture fault from :data:`PICTURE_MODES`; raises ValueError otherwise."""
        if mode not in PICTURE_MODES:
            raise ValueError(f"unknown picture mode {mode!r}; expected one of {PICTURE_MODES}")
        if self.picture != mode:
            self.picture = mode
            self._notify("picture")

    def _notify(self, what: str) -> None:
        for fn in list(self.listeners):
            fn(self, what)

    def public(self) -> dict[str, Any]:
        """The camera as the ready line and ``GET /cameras`` report it."""
        main = self.profiles[0] if self.profiles else None
        sub = self.profiles[1] if len(self.profiles) > 1 else main
        return {
            "id": self.id,
            "index": self.index,
            "name": self.name,
            "address": self.address,
            "http_port": self.http_port,
            "rtsp_port": self.rtsp_port,
            "onvif_url": self.onvif_url(),
            "rtsp_main": self.rtsp_url(main.rtsp_path) if main else None,
            "rtsp_sub": self.rtsp_url(sub.rtsp_path) if sub else None,
            "snapshot_url": self.snapshot_url(),
            "tls_fingerprint": self.tls_fingerprint or None,
            "endpoint": self.endpoint,
            "username": self.username,
            "password": self.password,
            "online": self.online,
            "fault": self.fault,
            "motion": self.motion,
            "alarms": dict(self.alarms),
            "picture": self.picture,
            "time": time.time(),
        }
