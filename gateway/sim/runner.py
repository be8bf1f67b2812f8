"""``gateway sim``: run N simulated ONVIF/RTSP cameras in one process, one asyncio loop.

Camera ``i`` (1-based) listens on the ``i``-th usable address from ``--base``
(127.0.10.1, .2, … .254, then 127.0.11.1 …), with its ONVIF side on
``--http-port`` and RTSP on ``--rtsp-port``. When everything listens, one JSON
line goes to stdout::

    {"ready": true, "control": "http://127.0.0.1:P", "cameras": [{"id", "name", "address",
     "http_port", "rtsp_port", "onvif_url", "rtsp_main", "rtsp_sub", "snapshot_url",
     "endpoint", "username", "password", ...}]}

The control API (:mod:`gateway.sim.control`) injects faults and motion. SIGTERM or
SIGINT stops everything cleanly. Encoders run in threads, one per played profile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from gateway.sim.camera import SimCamera, SimProfile
from gateway.sim.control import ControlServer
from gateway.sim.rtsp_server import RtspServer
from gateway.sim.source import ProfileEncoder, Scene
from gateway.sim.wsd_dialects import DIALECTS

log = logging.getLogger(__name__)

_ENCODINGS = {"h264": "H264", "hevc": "H265", "h265": "H265", "mjpeg": "JPEG"}


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2 or w > 7680 or h > 4320:
        raise argparse.ArgumentTypeError(f"size must be even, 16x16 to 7680x4320, got {text!r}")
    return w, h


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if any(not n or len(n) > 64 for n in names):
        raise argparse.ArgumentTypeError("names: comma-separated, each 1 to 64 characters")
    return names


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway sim", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=1, help="how many cameras (default 1)")
    p.add_argument("--base", type=_ipv4, default="127.0.10.1", help="first camera's address")
    p.add_argument("--http-port", type=int, default=8000, help="ONVIF/snapshot HTTP port")
    p.add_argument("--rtsp-port", type=int, default=8554, help="RTSP port")
    p.add_argument("--codec", choices=sorted(_ENCODINGS), default="h264")
    p.add_argument("--bframes", action="store_true", help="encode with B-frames (H.264/H.265)")
    p.add_argument("--size", type=_size, default=(1280, 720), help="main stream WxH")
    p.add_argument("--sub-size", type=_size, default=(640, 360), help="sub-stream WxH")
    p.add_argument("--fps", type=int, default=25, help="frames per second (main)")
    p.add_argument("--sub-fps", type=int, default=None, help="sub-stream fps (default: --fps)")
    p.add_argument("--gop", type=int, default=50, help="frames between keyframes")
    p.add_argument("--bitrate", type=int, default=2000, help="main stream kbit/s")
    p.add_argument("--sub-bitrate", type=int, default=500, help="sub-stream kbit/s")
    p.add_argument(
        "--names",
        type=_names,
        default=[],
        help="cameras' names, comma-separated in order (e.g. 村口,学校门口); the rest keep theirs",
    )
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument(
        "--rtsp-auth",
        nargs="?",
        const="digest",
        default="none",
        choices=["none", "basic", "digest"],
        help="require RTSP authentication (bare flag: digest)",
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=0,
        help="RTSP sessions each camera accepts at once, as real cameras limit them (0: any)",
    )
    p.add_argument("--motion-every", type=float, default=0, help="motion for a while every S s")
    p.add_argument("--motion-duration", type=float, default=None, help="seconds of each motion")
    p.add_argument(
        "--multicast-interface",
        default=None,
        help="interface (address or name) for multicast WS-Discovery (default: unicast only)",
    )
    p.add_argument("--no-onvif", action="store_true", help="RTSP only, no ONVIF HTTP side")
    p.add_argument("--no-wsd", action="store_true", help="no WS-Discovery responder")
    p.add_argument(
        "--wsd-dialect",
        choices=["mixed", *DIALECTS],
        default="standard",
        help="how ProbeMatches are worded (vendor forms); mixed: camera i takes the i-th",
    )
    p.add_argument(
        "--media2",
        choices=["off", "on", "h265-only"],
        default="off",
        help="ONVIF Media2 service; h265-only: H.265 profiles only there, not in Media1",
    )
    p.add_argument(
        "--no-events", action="store_true", help="no ONVIF events service (as older cameras)"
    )
    p.add_argument(
        "--soap",
        choices=["1.2", "1.1", "both"],
        default="1.2",
        help="SOAP versions the ONVIF side answers (1.1: only SOAP 1.1, as old firmwares)",
    )
    p.add_argument(
        "--clock-offset", type=float, default=0.0, help="the camera's clock is S s off true time"
    )
    p.add_argument(
        "--auth-window",
        type=float,
        default=300.0,
        help="WS-Security Created must be within S s of the camera's clock",
    )
    p.add_argument(
        "--no-ws-security",
        action="store_true",
        help="refuse WS-Security UsernameTokens: HTTP digest only",
    )
    p.add_argument(
        "--https",
        action="store_true",
        help="serve ONVIF HTTP on TLS with a new self-signed certificate (fingerprint on ready)",
    )
    p.add_argument("--control-port", type=int, default=0, help="control API port (0: any)")
    p.add_argument("--log-level", default="INFO")
    return p


def addresses(base: str, count: int) -> list[str]:
    """``count`` usable addresses from ``base``, skipping .0 and .255 of each /24."""
    cur = int(ipaddress.IPv4Address(base))
    out: list[str] = []
    while len(out) < count:
        if cur & 0xFF not in (0, 255):
            out.append(str(ipaddress.IPv4Address(cur)))
        cur += 1
    return out


def build_cameras(args: argparse.Namespace) -> list[SimCamera]:
    """The cameras the options describe (not started)."""
    encoding = _ENCODINGS[args.codec]
    cams = []
    for i, addr in enumerate(addresses(args.base, args.cameras), start=1):
        main_fps, sub_fps = args.fps, args.sub_fps or args.fps
        if encoding == "JPEG":
            # RTP/JPEG (RFC 2435) carries sizes in units of 8 pixels
            args.size = (args.size[0] & ~7, args.size[1] & ~7)
            args.sub_size = (args.sub_size[0] & ~7, args.sub_size[1] & ~7)
        profiles = [
            SimProfile("profile_main", "MainStream", args.size[0], args.size[1], main_fps,
                       args.gop, encoding, args.bitrate, "/main", args.bframes),
            SimProfile("profile_sub", "SubStream", args.sub_size[0], args.sub_size[1], sub_fps,
                       args.gop, encoding, args.sub_bitrate, "/sub", args.bframes),
        ]  # fmt: skip
        cam = SimCamera(
            index=i,
            address=addr,
            http_port=args.http_port,
            rtsp_port=args.rtsp_port,
            username=args.username,
            password=args.password,
            profiles=profiles,
            rtsp_auth=args.rtsp_auth,
            max_sessions=args.max_sessions,
            events=not getattr(args, "no_events", False),
            media2=getattr(args, "media2", "off"),
            soap=getattr(args, "soap", "1.2"),
            clock_offset_s=getattr(args, "clock_offset", 0.0),
            auth_window_s=getattr(args, "auth_window", 300.0),
            ws_security=not getattr(args, "no_ws_security", False),
            name=args.names[i - 1] if i <= len(args.names) else "",
        )
        cams.append(cam)
    if getattr(args, "https", False):
        from gateway.sim.tls import self_signed

        for cam in cams:
            cam.tls, cam.tls_fingerprint = self_signed(cam.address)
    return cams


class Simulator:
    """All cameras' media, ONVIF and discovery sides, and the control API."""

    def __init__(self, cameras: list[SimCamera], args: argparse.Namespace) -> None:
        self.cameras = cameras
        self.args = args
        self.rtsp: dict[str, RtspServer] = {}
        self.encoders: dict[str, dict[str, ProfileEncoder]] = {}
        self.onvif: dict[str, Any] = {}
        self.wsd: Any = None
        self.control = ControlServer(cameras, self.describe, self.settle)
        self._onvif_mod: Any = None
        self._tasks: set[asyncio.Task] = set()
        self._pending: dict[str, list[asyncio.Task]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.args.no_onvif:
            try:
                from gateway.sim import onvif_server

                self._onvif_mod = onvif_server
            except ImportError:
                log.warning("sim: gateway.sim.onvif_server missing; RTSP only")
        for cam in self.cameras:
            # Named cameras (the demo's sites) each get their own look, so the first camera
            # of every village does not show the same picture.
            look = None
            if cam.index <= len(getattr(self.args, "names", None) or []):
                look = cam.index + int(ipaddress.IPv4Address(cam.address)) % 97
            scene = Scene(cam.index, cam.id, look)
            main = cam.profiles[0]
            cam.snapshot_renderer = lambda c, s=scene, p=main: s.jpeg(
                p.width, p.height, c.motion, c.ptz
            )
            self.encoders[cam.id] = {
                p.rtsp_path: ProfileEncoder(cam, p, scene, loop) for p in cam.profiles
            }
            self.rtsp[cam.id] = RtspServer(cam, self.encoders[cam.id])
            await self.rtsp[cam.id].start()
            if self._onvif_mod is not None:
                self.onvif[cam.id] = await self._onvif_mod.start(cam)
            cam.listeners.append(self._on_camera_change)
        if not self.args.no_wsd:
            try:
                from gateway.sim import wsd_responder
            except ImportError:
                log.warning("sim: gateway.sim.wsd_responder missing; no WS-Discovery")
            else:
                # unicast Probes always; multicast only on an interface given explicitly
                self.wsd = await wsd_responder.start(
                    self.cameras,
                    self.args.multicast_interface,
                    dialect=getattr(self.args, "wsd_dialect", "standard"),
                )
        await self.control.start("127.0.0.1", self.args.control_port)
        if self.args.motion_every > 0:
            self._spawn(self._motion_schedule())

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_camera_change(self, cam: SimCamera, what: str) -> None:
        if what != "fault":
            return
        server = self.rtsp[cam.id]
        pending = self._pending.setdefault(cam.id, [])
        if not cam.online and server.server is not None:
            server.close()
        elif cam.online and server.server is None:
            pending.append(self._spawn(self._reopen(cam)))
        if self._onvif_mod is not None and hasattr(self._onvif_mod, "set_online"):
            pending.append(self._spawn(self._onvif_mod.set_online(cam, cam.online)))

    async def settle(self, cam: SimCamera) -> None:
        """Wait until the camera's listeners match its state (for the control API)."""
        pending, self._pending[cam.id] = self._pending.get(cam.id, []), []
        results = await asyncio.gather(*pending, return_exceptions=True)
        for res in results:
            if isinstance(res, Exception):
                log.warning("%s: applying the fault failed: %s", cam.id, res)

    async def _reopen(self, cam: SimCamera) -> None:
        try:
            await self.rtsp[cam.id].start()
        except OSError as err:
            log.error("%s: cannot listen on RTSP again: %s", cam.id, err)

    async def _motion_schedule(self) -> None:
        """Motion during the last D seconds of every period S (D defaults to min(3, S/2))."""
        every = self.args.motion_every
        dur = self.args.motion_duration or min(3.0, every / 2)
        t0 = time.monotonic()
        last: bool | None = None
        while True:
            on = (time.monotonic() - t0) % every >= every - dur
            if on != last:  # act on edges only, so the control API can override between
                for cam in self.cameras:
                    cam.set_motion(on)
                last = on
            await asyncio.sleep(0.05)

    def describe(self, cam: SimCamera) -> dict[str, Any]:
        out = cam.public()
        out["encoders"] = {
            path: {
                "running": e.running,
                "players": e.subscribers,
                "frames": e.frames_encoded,
                "errors": e.errors,
            }
            for path, e in self.encoders.get(cam.id, {}).items()
        }
        onvif = self.onvif.get(cam.id)
        if onvif is not None and hasattr(onvif, "events"):
            out["events"] = dict(
                onvif.events.counters, subscriptions=len(onvif.events.subscriptions)
            )
        server = self.rtsp.get(cam.id)
        out["rtsp_sessions"] = server.sessions() if server else 0  # set up (SETUP done)
        out["rtsp_connections"] = len(server.connections) if server else 0
        return out

    def ready_line(self) -> dict[str, Any]:
        return {
            "ready": True,
            "control": f"http://127.0.0.1:{self.control.port}",
            "cameras": [c.public() for c in self.cameras],
        }

    async def stop(self) -> None:
        self.control.close()
        for task in list(self._tasks):
            task.cancel()
        for server in self.rtsp.values():
            server.close()
        for server in self.onvif.values():
            with contextlib.suppress(Exception):
                server.close()
        if self.wsd is not None:
            with contextlib.suppress(Exception):
                self.wsd.close()
        await asyncio.to_thread(self._close_encoders)

    def _close_encoders(self) -> None:
        for encs in self.encoders.values():
            for enc in encs.values():
                enc.close()


async def _serve(args: argparse.Namespace) -> int:
    cameras = build_cameras(args)
    sim = Simulator(cameras, args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
    except OSError as err:
        print(f"gateway sim: cannot listen: {err}", file=sys.stderr)
        await sim.stop()
        return 1
    sys.stdout.write(json.dumps(sim.ready_line(), ensure_ascii=False) + "\n")
    sys.stdout.flush()
    log.info("sim: %d cameras ready, control on port %d", len(cameras), sim.control.port)
    await stop.wait()
    log.info("sim: stopping")
    await sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gateway sim``."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.cameras < 1 or args.fps < 1 or args.gop < 1:
        print("gateway sim: --cameras, --fps and --gop must be at least 1", file=sys.stderr)
        return 2
    from gateway.logs import setup_logging

    setup_logging(args.log_level.upper())
    return asyncio.run(_serve(args))
