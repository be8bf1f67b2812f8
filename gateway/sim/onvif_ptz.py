"""ONVIF PTZ service (ver20 ``tptz:``) of the simulated camera.

The state lives in ``camera.ptz`` (``pan``, ``tilt``, ``zoom``, ``moving``,
``presets``) in ONVIF's generic spaces: pan/tilt -1…1, zoom 0…1. A continuous
move integrates the velocity over time in a small asyncio task, so the position
seen by GetStatus (and by anyone reading ``camera.ptz``) changes while moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from lxml import etree

from gateway.sim.onvif_soap import SoapFault, child, text_of, x, xa

log = logging.getLogger(__name__)

NODE = "PTZNode_1"
CONFIG = "PTZConfig_1"
MAX_PRESETS = 32
# Generic-space units per second at velocity 1: a full pan sweep takes 4 s.
PAN_TILT_RATE = 0.5
ZOOM_RATE = 0.25
TICK_S = 0.05
_SPACES = "http://www.onvif.org/ver10/tptz"
PT_POSITION = f"{_SPACES}/PanTiltSpaces/PositionGenericSpace"
Z_POSITION = f"{_SPACES}/ZoomSpaces/PositionGenericSpace"
PT_TRANSLATION = f"{_SPACES}/PanTiltSpaces/TranslationGenericSpace"
Z_TRANSLATION = f"{_SPACES}/ZoomSpaces/TranslationGenericSpace"
PT_VELOCITY = f"{_SPACES}/PanTiltSpaces/VelocityGenericSpace"
Z_VELOCITY = f"{_SPACES}/ZoomSpaces/VelocityGenericSpace"
PT_SPEED = f"{_SPACES}/PanTiltSpaces/GenericSpeedSpace"
Z_SPEED = f"{_SPACES}/ZoomSpaces/ZoomGenericSpeedSpace"
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def _space2d(tag: str, uri: str, lo: float = -1.0) -> str:
    return (
        f"<tt:{tag}><tt:URI>{uri}</tt:URI><tt:XRange><tt:Min>{lo}</tt:Min><tt:Max>1</tt:Max>"
        f"</tt:XRange><tt:YRange><tt:Min>{lo}</tt:Min><tt:Max>1</tt:Max></tt:YRange></tt:{tag}>"
    )


def _space1d(tag: str, uri: str, lo: float) -> str:
    return (
        f"<tt:{tag}><tt:URI>{uri}</tt:URI><tt:XRange><tt:Min>{lo}</tt:Min>"
        f"<tt:Max>1</tt:Max></tt:XRange></tt:{tag}>"
    )


def ptz_configuration_xml(camera: Any, tag: str) -> str:
    """The one PTZ configuration, as ``tag`` (in profiles and GetConfigurations)."""
    return (
        f"<{tag} token={xa(CONFIG)}><tt:Name>PTZConfig</tt:Name>"
        f"<tt:UseCount>{len(camera.profiles)}</tt:UseCount><tt:NodeToken>{NODE}</tt:NodeToken>"
        f"<tt:DefaultAbsolutePantTiltPositionSpace>{PT_POSITION}"
        "</tt:DefaultAbsolutePantTiltPositionSpace>"
        f"<tt:DefaultAbsoluteZoomPositionSpace>{Z_POSITION}</tt:DefaultAbsoluteZoomPositionSpace>"
        f"<tt:DefaultRelativePanTiltTranslationSpace>{PT_TRANSLATION}"
        "</tt:DefaultRelativePanTiltTranslationSpace>"
        f"<tt:DefaultRelativeZoomTranslationSpace>{Z_TRANSLATION}"
        "</tt:DefaultRelativeZoomTranslationSpace>"
        f"<tt:DefaultContinuousPanTiltVelocitySpace>{PT_VELOCITY}"
        "</tt:DefaultContinuousPanTiltVelocitySpace>"
        f"<tt:DefaultContinuousZoomVelocitySpace>{Z_VELOCITY}"
        "</tt:DefaultContinuousZoomVelocitySpace>"
        f'<tt:DefaultPTZSpeed><tt:PanTilt x="1" y="1" space="{PT_SPEED}"/>'
        f'<tt:Zoom x="1" space="{Z_SPEED}"/></tt:DefaultPTZSpeed>'
        "<tt:DefaultPTZTimeout>PT5S</tt:DefaultPTZTimeout>"
        f"<tt:PanTiltLimits>{_space2d('Range', PT_POSITION)}</tt:PanTiltLimits>"
        f"<tt:ZoomLimits>{_space1d('Range', Z_POSITION, 0)}</tt:ZoomLimits></{tag}>"
    )


def _node_xml() -> str:
    spaces = (
        _space2d("AbsolutePanTiltPositionSpace", PT_POSITION)
        + _space1d("AbsoluteZoomPositionSpace", Z_POSITION, 0)
        + _space2d("RelativePanTiltTranslationSpace", PT_TRANSLATION)
        + _space1d("RelativeZoomTranslationSpace", Z_TRANSLATION, -1)
        + _space2d("ContinuousPanTiltVelocitySpace", PT_VELOCITY)
        + _space1d("ContinuousZoomVelocitySpace", Z_VELOCITY, -1)
        + _space1d("PanTiltSpeedSpace", PT_SPEED, 0)
        + _space1d("ZoomSpeedSpace", Z_SPEED, 0)
    )
    return (
        f'<tptz:PTZNode token="{NODE}" FixedHomePosition="false"><tt:Name>PTZ</tt:Name>'
        f"<tt:SupportedPTZSpaces>{spaces}</tt:SupportedPTZSpaces>"
        f"<tt:MaximumNumberOfPresets>{MAX_PRESETS}</tt:MaximumNumberOfPresets>"
        "<tt:HomeSupported>false</tt:HomeSupported></tptz:PTZNode>"
    )


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, value))


def _vector(op: etree._Element, name: str) -> tuple[float | None, float | None, float | None]:
    """(x, y, zoom) from a PTZVector/PTZSpeed element; None where absent."""
    vec = child(op, name)
    if vec is None:
        return None, None, None
    pt, zoom = child(vec, "PanTilt"), child(vec, "Zoom")
    try:
        px = float(pt.get("x", "0")) if pt is not None else None
        py = float(pt.get("y", "0")) if pt is not None else None
        pz = float(zoom.get("x", "0")) if zoom is not None else None
    except ValueError:
        raise SoapFault("Sender", "ter:InvalidArgVal ter:InvalidVelocity", "bad vector") from None
    return px, py, pz


def _duration_s(text: str | None) -> float | None:
    match = _DURATION.match((text or "").strip())
    if not text or not match:
        return None
    d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return d * 86400 + h * 3600 + m * 60 + s


class PtzController:
    """The PTZ operations of one camera, with the task that moves it."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera
        self.state: dict[str, Any] = camera.ptz
        self.state.setdefault("presets", {})
        for key, default in (("pan", 0.0), ("tilt", 0.0), ("zoom", 0.0), ("moving", False)):
            self.state.setdefault(key, default)
        self._velocity = (0.0, 0.0, 0.0)
        self._deadline: float | None = None
        self._task: asyncio.Task | None = None
        self._tokens = itertools.count(len(self.state["presets"]) + 1)

    def operations(self) -> dict[str, Callable[[Any, etree._Element], str]]:
        """Local name → handler, in the shape the server dispatches on."""
        return {
            "GetNodes": lambda c, op: (
                f"<tptz:GetNodesResponse>{_node_xml()}</tptz:GetNodesResponse>"
            ),
            "GetNode": self.get_node,
            "GetConfigurations": lambda c, op: (
                "<tptz:GetConfigurationsResponse>"
                f"{ptz_configuration_xml(c, 'tptz:PTZConfiguration')}"
                "</tptz:GetConfigurationsResponse>"
            ),
            "GetServiceCapabilities": lambda c, op: (
                '<tptz:GetServiceCapabilitiesResponse><tptz:Capabilities EFlip="false" '
                'Reverse="false"/></tptz:GetServiceCapabilitiesResponse>'
            ),
            "ContinuousMove": self.continuous_move,
            "AbsoluteMove": self.absolute_move,
            "Stop": self.stop_move,
            "GetStatus": self.get_status,
            "GetPresets": self.get_presets,
            "GotoPreset": self.goto_preset,
            "SetPreset": self.set_preset,
            "RemovePreset": self.remove_preset,
        }

    def _check_profile(self, op: etree._Element) -> None:
        token = text_of(op, "ProfileToken")
        if token not in {p.token for p in self.camera.profiles}:
            raise SoapFault("Sender", "ter:InvalidArgVal ter:NoProfile", f"no profile {token!r}")

    def get_node(self, _camera: Any, op: etree._Element) -> str:
        if text_of(op, "NodeToken") != NODE:
            raise SoapFault("Sender", "ter:InvalidArgVal ter:NoEntity", "no such PTZ node")
        return f"<tptz:GetNodeResponse>{_node_xml()}</tptz:GetNodeResponse>"

    def continuous_move(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        vx, vy, vz = _vector(op, "Velocity")
        self._velocity = (
            _clamp(vx or 0.0, -1, 1),
            _clamp(vy or 0.0, -1, 1),
            _clamp(vz or 0.0, -1, 1),
        )
        timeout = _duration_s(text_of(op, "Timeout"))
        self._deadline = time.monotonic() + timeout if timeout else None
        moving = any(self._velocity)
        self.state["moving"] = moving
        if moving and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._move())
        log.debug("sim %s: PTZ continuous move %s", self.camera.id, self._velocity)
        return "<tptz:ContinuousMoveResponse/>"

    async def _move(self) -> None:
        last = time.monotonic()
        while any(self._velocity):
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                now = self._deadline
                self._integrate(now - last)
                break
            self._integrate(now - last)
            last = now
        self._velocity = (0.0, 0.0, 0.0)
        self.state["moving"] = False

    def _integrate(self, elapsed: float) -> None:
        vx, vy, vz = self._velocity
        self.state["pan"] = _clamp(self.state["pan"] + vx * PAN_TILT_RATE * elapsed, -1, 1)
        self.state["tilt"] = _clamp(self.state["tilt"] + vy * PAN_TILT_RATE * elapsed, -1, 1)
        self.state["zoom"] = _clamp(self.state["zoom"] + vz * ZOOM_RATE * elapsed, 0, 1)

    def stop_move(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        stop_pt = (text_of(op, "PanTilt") or "true").lower() in ("true", "1")
        stop_zoom = (text_of(op, "Zoom") or "true").lower() in ("true", "1")
        vx, vy, vz = self._velocity
        self._velocity = (0.0 if stop_pt else vx, 0.0 if stop_pt else vy, 0.0 if stop_zoom else vz)
        self.state["moving"] = any(self._velocity)
        return "<tptz:StopResponse/>"

    def absolute_move(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        px, py, pz = _vector(op, "Position")
        self._velocity = (0.0, 0.0, 0.0)
        self._place(px, py, pz)
        return "<tptz:AbsoluteMoveResponse/>"

    def _place(self, pan: float | None, tilt: float | None, zoom: float | None) -> None:
        if pan is not None:
            self.state["pan"] = _clamp(pan, -1, 1)
        if tilt is not None:
            self.state["tilt"] = _clamp(tilt, -1, 1)
        if zoom is not None:
            self.state["zoom"] = _clamp(zoom, 0, 1)
        self.state["moving"] = False

    def _position_xml(self, pan: float, tilt: float, zoom: float) -> str:
        return (
            f'<tt:PanTilt x="{pan:.4f}" y="{tilt:.4f}" space="{PT_POSITION}"/>'
            f'<tt:Zoom x="{zoom:.4f}" space="{Z_POSITION}"/>'
        )

    def get_status(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        s = self.state
        zoom_moving = "MOVING" if s["moving"] and self._velocity[2] else "IDLE"
        pt_moving = "MOVING" if s["moving"] and any(self._velocity[:2]) else "IDLE"
        utc = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            "<tptz:GetStatusResponse><tptz:PTZStatus>"
            f"<tt:Position>{self._position_xml(s['pan'], s['tilt'], s['zoom'])}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{pt_moving}</tt:PanTilt>"
            f"<tt:Zoom>{zoom_moving}</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{utc}</tt:UtcTime></tptz:PTZStatus></tptz:GetStatusResponse>"
        )

    def get_presets(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        body = "".join(
            f"<tptz:Preset token={xa(token)}><tt:Name>{x(p['name'])}</tt:Name>"
            f"<tt:PTZPosition>{self._position_xml(p['pan'], p['tilt'], p['zoom'])}"
            "</tt:PTZPosition></tptz:Preset>"
            for token, p in self.state["presets"].items()
        )
        return f"<tptz:GetPresetsResponse>{body}</tptz:GetPresetsResponse>"

    def _preset(self, op: etree._Element) -> tuple[str, dict[str, Any]]:
        token = text_of(op, "PresetToken") or ""
        preset = self.state["presets"].get(token)
        if preset is None:
            raise SoapFault("Sender", "ter:InvalidArgVal ter:NoToken", f"no preset {token!r}")
        return token, preset

    def goto_preset(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        _token, preset = self._preset(op)
        self._velocity = (0.0, 0.0, 0.0)
        self._place(preset["pan"], preset["tilt"], preset["zoom"])
        return "<tptz:GotoPresetResponse/>"

    def set_preset(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        presets = self.state["presets"]
        name = text_of(op, "PresetName")
        if text_of(op, "PresetToken"):
            token, preset = self._preset(op)
            name = name or preset["name"]
        else:
            if len(presets) >= MAX_PRESETS:
                raise SoapFault("Receiver", "ter:Action ter:TooManyPresets", "preset list is full")
            token = f"Preset_{next(self._tokens)}"
            while token in presets:
                token = f"Preset_{next(self._tokens)}"
            name = name or token
        if any(p["name"] == name for t, p in presets.items() if t != token):
            raise SoapFault("Sender", "ter:InvalidArgVal ter:PresetExist", f"{name!r} exists")
        s = self.state
        presets[token] = {"name": name, "pan": s["pan"], "tilt": s["tilt"], "zoom": s["zoom"]}
        return (
            f"<tptz:SetPresetResponse><tptz:PresetToken>{x(token)}</tptz:PresetToken>"
            "</tptz:SetPresetResponse>"
        )

    def remove_preset(self, _camera: Any, op: etree._Element) -> str:
        self._check_profile(op)
        token, _preset = self._preset(op)
        del self.state["presets"][token]
        return "<tptz:RemovePresetResponse/>"

    async def close(self) -> None:
        """Stop any move in progress."""
        self._velocity = (0.0, 0.0, 0.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.state["moving"] = False
