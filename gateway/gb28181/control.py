"""DeviceControl from the platform (GB/T 28181-2016 A.2.3.1): ``PTZCmd`` (moves, stop and
presets 预置位) → our PTZ, locally over ONVIF or through the cascade for a child's camera
(:mod:`gateway.cascade.access` routes by path). ``GuardCmd`` (布防/撤防) arms or disarms
the alarm reports of one channel, or of all when it names this device; answered with a
``Response`` (Result OK). TeleBoot, RecordCmd, AlarmCmd and DragZoom are not supported
here: the MESSAGE gets its 200 and, where the standard asks for one, a ``Response`` with
``Result`` ERROR, and one log line says why.

A malformed PTZCmd (wrong checksum, conflicting direction bits) is refused with 400; an
unknown channel with 404. Commands to one camera run in arrival order (a stop never
overtakes the move it ends).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from gateway.cascade import access
from gateway.cascade.local import Local
from gateway.gb28181 import manscdp, ptzcmd
from gateway.gb28181.platform import Platform
from gateway.gb28181.sip.agent import SipTimeout, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage

log = logging.getLogger(__name__)
# Control elements other than PTZCmd: all need a Response (A.2.6.?) except TeleBoot/IFame.
UNSUPPORTED = ("TeleBoot", "RecordCmd", "AlarmCmd", "DragZoomIn", "DragZoomOut")
NO_RESPONSE = ("TeleBoot", "IFameCmd", "PTZCmd")
PRESET_NAME = "gb-{n}"  # presets we set for a platform are named so


class CameraControl(Protocol):
    """Our PTZ by camera path (``gateway.cascade.access`` in a running gateway)."""

    async def ptz(self, path: str, command: dict[str, Any]) -> dict[str, Any]: ...

    async def presets(self, path: str) -> list[dict[str, Any]]: ...


class AccessControl:
    """:class:`CameraControl` over ``gateway.cascade.access`` (local or through children)."""

    def __init__(self, here: Local) -> None:
        self.here = here

    async def ptz(self, path: str, command: dict[str, Any]) -> dict[str, Any]:
        return await access.ptz(self.here, path, command)

    async def presets(self, path: str) -> list[dict[str, Any]]:
        return await access.presets(self.here, path)


def find_preset(presets: list[dict[str, Any]], n: int, *, nth: bool) -> str | None:
    """The ONVIF token for GB preset ``n``: one we named ``gb-n``, else a token or name
    ``n``, else (``nth``, for go-to only) the camera's n-th preset."""
    for want in ("name", "token"):
        for p in presets:
            if want == "name" and p.get("name") == PRESET_NAME.format(n=n):
                return str(p["token"])
            if str(p.get(want, "")) == str(n):
                return str(p["token"])
    if nth and 1 <= n <= len(presets):
        return str(presets[n - 1]["token"])
    return None


class DeviceControl:
    """Handles the MESSAGEs whose body is ``<Control><CmdType>DeviceControl``."""

    def __init__(self, client: Platform, cameras: CameraControl | None) -> None:
        self.client = client
        self.cameras = cameras
        self.done = 0  # commands carried out (for tests and the status page)
        self.failed = 0
        self.disarmed: set[str] = set()  # channel ids (or our device id: all) not reporting alarms
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, req: SipMessage) -> SipMessage | None:
        """The answer to a DeviceControl MESSAGE, or None when the body is something else."""
        cfg = self.client.cfg
        try:
            msg = manscdp.parse(req.body, cfg.charset)
        except manscdp.ManscdpError:
            return None  # the query handler refuses it with the reason
        if msg.root != "Control" or msg.cmd != "DeviceControl":
            return None
        ptz_text = msg.xml.findtext("PTZCmd")
        if ptz_text is not None:
            try:
                command = ptzcmd.parse(ptz_text)
            except ptzcmd.PtzCmdError as err:
                log.warning("gb28181 %s: refused a PTZCmd: %s", cfg.id, err)
                return make_response(req, 400, f"Bad PTZCmd: {err}"[:120], new_tag())
            channel = await asyncio.to_thread(self.client.directory.camera_for, msg.device_id)
            if channel is None:
                log.info("gb28181 %s: PTZCmd for unknown channel %r", cfg.id, msg.device_id)
                return make_response(req, 404, "Channel Not Found", new_tag())
            self._spawn(self._ptz(channel.camera_path, command))
            return make_response(req, 200, "OK", new_tag())
        guard = msg.xml.findtext("GuardCmd")
        if guard is not None:
            result = self._guard(msg.device_id, guard.strip())
            self._spawn(self._respond(msg, result))
            return make_response(req, 200, "OK", new_tag())
        what = next((e.tag for e in msg.xml if e.tag in UNSUPPORTED), None)
        what = what or next((e.tag for e in msg.xml if e.tag not in _HEAD), "(nothing)")
        log.info(
            "gb28181 %s: DeviceControl %s for %s is not supported here",
            cfg.id,
            what[:32],
            msg.device_id,
        )
        if what not in NO_RESPONSE:
            self._spawn(self._respond(msg, "ERROR"))
        return make_response(req, 200, "OK", new_tag())

    def armed(self, channel_id: str) -> bool:
        """Whether alarms of ``channel_id`` are reported (not disarmed, nor the device)."""
        return not ({channel_id, self.client.cfg.device_id} & self.disarmed)

    def _guard(self, target: str, command: str) -> str:
        cfg = self.client.cfg
        if command not in ("SetGuard", "ResetGuard") or not target.isdigit() or len(target) != 20:
            log.info("gb28181 %s: GuardCmd %r for %r refused", cfg.id, command[:20], target[:24])
            return "ERROR"
        if target == cfg.device_id and command == "SetGuard":
            self.disarmed.clear()
        elif command == "SetGuard":
            self.disarmed.discard(target)
        elif len(self.disarmed) < 10_000:
            self.disarmed.add(target)
        log.info("gb28181 %s: %s for %s", cfg.id, command, target)
        return "OK"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respond(self, msg: manscdp.Query, result: str) -> None:
        cfg = self.client.cfg
        body = manscdp.render(
            "Response",
            [
                ("CmdType", "DeviceControl"),
                ("SN", msg.sn),
                ("DeviceID", msg.device_id),
                ("Result", result),
            ],
            cfg.charset,
        )
        try:
            await self.client.send_message(body)
        except (SipTimeout, OSError) as err:
            log.info("gb28181 %s: DeviceControl response not delivered: %s", cfg.id, err)

    async def _ptz(self, path: str, command: ptzcmd.PtzCommand) -> None:
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            try:
                await self._carry_out(path, command)
            except Exception as err:  # AccessError, OnvifError, a child gone …
                self.failed += 1
                log.warning(
                    "gb28181 %s: PTZ %s on %s failed: %s",
                    self.client.cfg.id,
                    command.kind,
                    path,
                    err,
                )
                return
            self.done += 1

    async def _carry_out(self, path: str, command: ptzcmd.PtzCommand) -> None:
        if self.cameras is None:
            raise RuntimeError("PTZ is not available on this gateway")
        cfg_id = self.client.cfg.id
        if command.kind in ("move", "stop"):
            await self.cameras.ptz(path, command.as_onvif())
            log.debug("gb28181 %s: PTZ %s on %s", cfg_id, command.as_onvif(), path)
            return
        if command.kind not in ("preset_set", "preset_goto", "preset_delete"):
            raise RuntimeError(f"command {command.code:02X} ({command.kind}) is not supported")
        n = command.preset
        presets = await self.cameras.presets(path)
        token = find_preset(presets, n, nth=command.kind == "preset_goto")
        if command.kind == "preset_goto":
            if token is None:
                raise RuntimeError(f"no preset {n}")
            await self.cameras.ptz(path, {"action": "goto_preset", "preset": token})
        elif command.kind == "preset_set":
            cmd: dict[str, Any] = {"action": "set_preset", "name": PRESET_NAME.format(n=n)}
            if token is not None:
                cmd = {"action": "set_preset", "preset": token}
            await self.cameras.ptz(path, cmd)
        else:
            if token is None:
                raise RuntimeError(f"no preset {n} to delete")
            await self.cameras.ptz(path, {"action": "remove_preset", "preset": token})
        log.info("gb28181 %s: preset %s %d on %s", cfg_id, command.kind[7:], n, path)


_HEAD = ("CmdType", "SN", "DeviceID", "Info")
