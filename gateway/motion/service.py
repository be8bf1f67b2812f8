"""``gw.motion``: one motion worker per enabled camera, following camera changes.

Cameras come from the registry (each camera's ``motion`` settings, else the
defaults in ``settings.motion``). Each worker holds a stream lease on the camera's
sub-stream (``motion.stream``; the main stream when the camera has no sub-stream)
and publishes ``type="motion"`` events on the bus: once when the event starts
(``end`` unset) and again, same id, when it ends.

A supervisor task restarts workers whose stream went away (hub closed) and applies
registry changes; workers stop in threads so the event loop never waits on a join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from gateway.aio import within
from gateway.cameras.model import Camera
from gateway.cameras.registry import Registry
from gateway.config import MotionSettings
from gateway.core import Core
from gateway.diagnosis.service import DiagnosisService
from gateway.events.model import Event
from gateway.motion.worker import MotionWorker
from gateway.streams.manager import Lease, StreamManager

log = logging.getLogger(__name__)

SUPERVISE_S = 2.0


@dataclass
class _Running:
    worker: MotionWorker
    lease: Lease
    settings: MotionSettings
    profile: str


class MotionService:
    """The ``motion`` part of the gateway."""

    def __init__(
        self,
        core: Core,
        streams: StreamManager,
        registry: Registry,
        diagnosis: DiagnosisService | None = None,
    ) -> None:
        self.core = core  # settings.motion (the defaults), the bus, this gateway's path
        self.streams = streams
        self.registry = registry
        self.diagnosis = diagnosis  # taps the decoded frames; None when diagnosis is off
        self.workers: dict[str, _Running] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failures: dict[str, str] = {}  # camera -> why its worker cannot run

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.registry.on_change(self._camera_changed)
        await self._sync()
        self._task = asyncio.create_task(self._supervise(), name="motion supervisor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*(self._stop_one(cid) for cid in list(self.workers)))

    # -- what should run ---------------------------------------------------------------
    def desired(self) -> dict[str, MotionSettings]:
        """Camera id → motion settings, for every enabled local camera with motion on."""
        out: dict[str, MotionSettings] = {}
        defaults = self.core.settings.motion
        for cam in self.registry.list():
            cid = cam.id
            if not cid or "/" in cid or not cam.enabled:
                continue  # remote cameras are analysed by the gateway that owns them
            settings = cam.motion or defaults
            # source "camera": the camera's own ONVIF events; nothing is decoded here.
            if settings.enabled and settings.source != "camera":
                out[cid] = settings
        return out

    def _profile(self, camera_id: str, settings: MotionSettings) -> str:
        """The sub-stream unless the camera has none (then its main stream).

        Asking for "sub" of a camera without one would open its main stream a second
        time under another name; one session per camera stream is the rule.
        """
        if settings.stream == "main":
            return "main"
        cam = self.registry.get(camera_id)
        if cam is not None:
            if cam.onvif:
                sub = cam.profile("sub")
                return "sub" if sub and cam.sub_profile != cam.main_profile else "main"
            return "sub" if cam.sub_rtsp_url else "main"
        static = next((c for c in self.core.settings.cameras if c.id == camera_id), None)
        if static is not None and static.sub_rtsp_url is None:
            return "main"
        return "sub"

    # -- reconciling -------------------------------------------------------------------
    def _camera_changed(self, _camera: Camera | None = None) -> None:
        """Registry listener (any thread): reconcile soon."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self._wake.wait(), SUPERVISE_S)
            self._wake.clear()
            try:
                await self._sync()
            except Exception:
                log.exception("motion: reconciling workers failed")

    async def _sync(self) -> None:
        want = self.desired()
        for cid in list(self.workers):
            running = self.workers[cid]
            if cid not in want:
                log.info("%s: motion detection off", cid)
                await self._stop_one(cid)
            elif (
                running.settings != want[cid]
                or not running.worker.running
                or running.profile != self._profile(cid, want[cid])
            ):
                if not running.worker.running:
                    log.info("%s: motion worker ended (%s); restarting", cid, running.lease.key)
                await self._stop_one(cid)
        for cid, settings in want.items():
            if cid not in self.workers:
                await self._start_one(cid, settings)

    async def _start_one(self, camera_id: str, settings: MotionSettings) -> None:
        profile = self._profile(camera_id, settings)
        try:
            lease = self.streams.acquire(camera_id, profile, consumer="motion")
        except (KeyError, ValueError, RuntimeError) as err:
            if self.failures.get(camera_id) != str(err):
                log.warning("%s: motion cannot get the %s stream: %s", camera_id, profile, err)
            self.failures[camera_id] = str(err)
            return
        try:
            tap = self.diagnosis.tap_for(camera_id) if self.diagnosis is not None else None
            worker = MotionWorker(
                camera_id,
                settings,
                lease.hub,
                self._publish,
                source=self.core.path,
                taps=[tap] if tap is not None else [],
            )
        except ValueError as err:  # bad polygons: say which camera, keep the others
            lease.release()
            log.error("%s: motion settings rejected: %s", camera_id, err)
            self.failures[camera_id] = str(err)
            return
        worker.start()
        self.failures.pop(camera_id, None)
        self.workers[camera_id] = _Running(worker, lease, settings, profile)
        log.info("%s: motion detection on the %s stream", camera_id, profile)

    async def _stop_one(self, camera_id: str) -> None:
        running = self.workers.pop(camera_id, None)
        if running is None:
            return
        await asyncio.to_thread(running.worker.stop)
        running.lease.release()

    def _publish(self, event: Event, jpeg: bytes | None) -> None:
        """Worker threads hand their events to the bus (stored, then fanned out)."""
        self.core.bus.publish(event, snapshot_jpeg=jpeg)

    # -- figures -------------------------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        out = []
        for _cid, running in sorted(self.workers.items()):
            out.append({**running.worker.stats(), "stream": running.lease.key})
        for cid, why in sorted(self.failures.items()):
            out.append({"camera": cid, "running": False, "last_error": why})
        return out

    def metrics(self) -> Any:
        """Prometheus samples, one series per camera."""
        from gateway.metrics import Sample

        for s in self.stats():
            if "decoded" not in s:
                continue
            labels = {"camera": s["camera"], "stream": s["stream"]}
            yield Sample(
                "motion_frames_analysed_total", s["analysed"], labels, "Frames analysed", "counter"
            )
            yield Sample(
                "motion_decode_errors_total", s["decode_errors"], labels, "Decode errors", "counter"
            )
            yield Sample("motion_events_total", s["events"], labels, "Motion events", "counter")
            yield Sample(
                "motion_cpu_percent",
                s["cpu_percent"],
                labels,
                "CPU of the motion worker, % of one core",
            )
            yield Sample("motion_active", int(s["event_open"]), labels, "1 during an event")
