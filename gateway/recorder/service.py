"""The recorder part (``gw.recorder``): per-camera recording policies, events, retention.

Policies come from the camera registry (``camera.recording``) when there is one,
else from the config (``cameras[*].recording``, default ``recording``). Each recorded
camera gets a :class:`~gateway.recorder.worker.CameraRecorder` thread consuming the
camera's hub through the stream manager. Events on the bus for a camera hand a trigger to
its thread (pre-roll, post-roll); ``record_for`` is the linkage entry point.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core import Core
from gateway.events.model import Event
from gateway.recorder.index import RecordingIndex
from gateway.recorder.playback import Clip, ClipCache
from gateway.recorder.policy import Policy, policy_from
from gateway.recorder.recovery import recover
from gateway.recorder.retention import Retention, disk_state
from gateway.recorder.worker import CameraRecorder, Surroundings
from gateway.store import events as event_store
from gateway.store import recordings as store
from gateway.streams.manager import Lease, StreamManager

if TYPE_CHECKING:  # the ONVIF client it imports costs a recorder-only process 0.25 s
    from gateway.cameras.registry import Registry

log = logging.getLogger(__name__)

# Events about status, not about something seen: they never trigger a recording.
_STATUS_PREFIXES = ("camera_", "recording_", "gateway_", "child_", "disk_", "cascade_")
_STATUS_TYPES = {"linkage"}
# Alarms a camera raises itself (ONVIF events), despite the "camera_" prefix.
_CAMERA_ALARMS = {"camera_motion"}


def is_trigger(event: Event) -> bool:
    """Whether an event means 'something happened in front of this camera'."""
    return bool(event.camera) and (
        event.type in _CAMERA_ALARMS
        or not (event.type in _STATUS_TYPES or event.type.startswith(_STATUS_PREFIXES))
    )


class Recorder:
    """Continuous and event recording for every camera whose policy asks for it.

    ``registry``: where the cameras and their policies come from; None takes them from
    the config. ``streams``: where the cameras' hubs come from; None only for a recorder
    that serves playback of what is on disk (its camera threads wait for a stream).
    """

    def __init__(
        self, core: Core, *, registry: Registry | None, streams: StreamManager | None
    ) -> None:
        self.core = core
        self.registry = registry
        self.streams = streams
        self.settings = core.settings
        self.root: Path = Path(core.data_dir) / "recordings"
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = RecordingIndex(core.db, self.root)
        self.retention = Retention(self.index, core.settings.retention)
        self.clips = ClipCache(
            self.index,
            Path(core.data_dir) / "clips",
            max_bytes=int(core.settings.retention.clip_cache_mb * 1024 * 1024),
            over_limit=self.retention.over_limit,
        )
        self.retention.add_reclaimer(self.clips.reclaim)
        # What the camera threads get of the recorder, and nothing more.
        self._around = Surroundings(
            index=self.index,
            retention=self.retention,
            acquire=self._acquire,
            release=self._release,
            publish=self._publish_status,
            finished=self._worker_finished,
            continuous_days=self.settings.retention.continuous_days,
            stall_timeout_s=self.settings.streams.stall_timeout_s,
        )
        self.workers: dict[str, CameraRecorder] = {}
        self.recovered: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._retention_thread: threading.Thread | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self.recovered = await asyncio.to_thread(recover, self.index)
        if any(self.recovered.values()):
            log.info("recordings recovered after an unclean stop: %s", self.recovered)
        self.core.bus.add_listener(self._on_event)
        if self.registry is not None:
            self.registry.on_change(lambda _camera: self.reconcile())
        self._started = True
        self.reconcile()
        self._retention_thread = threading.Thread(
            target=self._retention_loop, name="recorder:retention", daemon=True
        )
        self._retention_thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        self.core.bus.remove_listener(self._on_event)
        with self._lock:
            workers = list(self.workers.values())
            self.workers.clear()
        for worker in workers:
            worker.stop()
        await asyncio.to_thread(_join_all, [*workers, self._retention_thread])

    def _retention_loop(self) -> None:
        while not self._stopping.wait(self.settings.retention.check_interval_s):
            self.retention.run_once()

    # -- policies -------------------------------------------------------------------------
    def policies(self) -> dict[str, Policy]:
        """Camera id → recording policy, for the cameras that record."""
        out: dict[str, Policy] = {}
        if self.registry is not None:
            for cam in self.registry.list():
                if not cam.enabled:
                    continue
                policy = policy_from(cam.recording)  # the camera's own, or the defaults
                if policy:
                    out[cam.id] = policy
            return out
        for configured in self.settings.cameras:
            if not configured.enabled:
                continue
            if policy := policy_from(self.settings.camera_recording(configured)):
                out[configured.id] = policy
        return out

    def reconcile(self) -> None:
        """Start, stop or restart camera threads to match the policies (any thread)."""
        if not self._started or self._stopping.is_set():
            return
        wanted = self.policies()
        with self._lock:
            for camera, worker in list(self.workers.items()):
                policy = wanted.get(camera)
                if worker.transient and policy is None:
                    continue  # a record_for run finishes on its own
                if policy != worker.policy:
                    worker.stop()
                    del self.workers[camera]
            for camera, policy in wanted.items():
                if camera not in self.workers:
                    self._spawn(camera, policy)

    def _spawn(
        self, camera: str, policy: Policy, transient: bool = False, until: float = 0.0
    ) -> CameraRecorder:
        worker = CameraRecorder(self._around, camera, policy, transient=transient)
        if until:
            # Before start: a transient thread that finds nothing to do ends at once.
            worker.trigger(None, time.time(), until, post_s=0.0)
        self.workers[camera] = worker
        worker.start()
        log.info("camera %s: recording %s (%s stream)", camera, policy.mode, policy.stream)
        return worker

    def _worker_finished(self, worker: CameraRecorder) -> None:
        with self._lock:
            if self.workers.get(worker.camera) is worker:
                del self.workers[worker.camera]

    # -- streams (called from worker threads) ------------------------------------------
    def _acquire(self, camera: str, profile: str) -> Lease:
        if self.streams is None:
            raise RuntimeError("no stream manager")
        return self.streams.acquire(camera, profile, consumer="recorder")

    def _release(self, lease: Lease) -> None:
        try:
            lease.release()
        except Exception as err:
            log.warning("releasing a stream lease failed: %s", err)

    # -- events ---------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        """Bus listener: hand the trigger to the camera's thread (quick, publisher's thread)."""
        if not is_trigger(event):
            return
        worker = self.workers.get(event.camera)
        if worker is None or worker.policy.mode == "continuous":
            return
        end = event.end.timestamp() if event.end else None
        worker.trigger(event.id, event.start.timestamp(), end)

    def _publish_status(self, camera: str, type_: str, data: dict[str, Any]) -> None:
        try:
            self.core.bus.publish(
                Event(camera=camera, type=type_, source=self.core.path, data=data)
            )
        except Exception as err:  # the database may sit on the full disk too
            log.warning("camera %s: could not publish %s: %s", camera, type_, err)

    def record_for(self, camera_id: str, seconds: float, reason: str = "") -> bool:
        """Record ``camera_id`` from now for ``seconds``, flagged as event footage (linkage).

        A camera that is not being recorded gets a temporary recording. Returns False
        when the request is not valid (no camera id, non-positive duration).
        """
        if not camera_id or not seconds or seconds <= 0:
            return False
        now = time.time()
        with self._lock:
            worker = self.workers.get(camera_id)
            if worker is None or not worker.is_alive():
                defaults = self.settings.recording
                policy = Policy("events", defaults.stream, defaults.segment_s, 0.0, 0.0)
                worker = self._spawn(camera_id, policy, transient=True, until=now + seconds)
            else:
                worker.trigger(None, now, now + seconds, post_s=0.0)
        log.info("camera %s: recording for %.0f s (%s)", camera_id, seconds, reason or "linkage")
        return True

    # -- protection -----------------------------------------------------------------------
    def protect(
        self,
        event_id: str | None = None,
        segment_ids: list[int] | None = None,
        locked: bool = True,
    ) -> dict[str, Any]:
        """Lock (or unlock) an event's footage or given segments against eviction.

        Raises KeyError when the event does not exist.
        """
        if event_id is not None:
            event = event_store.get(self.core.db, event_id)
            if event is None:
                raise KeyError(event_id)
            policy = self.policies().get(event.camera) or policy_from(self.settings.recording)
            pre = policy.pre_s if policy else self.settings.recording.pre_s
            post = policy.post_s if policy else self.settings.recording.post_s
            start = event.start.timestamp() - pre
            end = (event.end or event.start).timestamp() + post
            if locked:
                store.add_lock(self.core.db, event.camera, start, end, event_id)
            else:
                store.remove_event_locks(self.core.db, event_id)
            ids = [s["id"] for s in store.segments(self.core.db, event.camera, start, end)]
            return {"event_id": event_id, "camera": event.camera, "locked": locked, "segments": ids}
        ids = [int(i) for i in segment_ids or []]
        store.set_locked(self.core.db, ids, locked)
        return {"locked": locked, "segments": ids}

    # -- playback -----------------------------------------------------------------------
    def recordings(
        self,
        camera: str,
        start: datetime | float | None = None,
        end: datetime | float | None = None,
    ) -> list[dict[str, Any]]:
        """The camera's segments overlapping [start, end] (default: the last day), public form."""
        t1 = _seconds(end) if end is not None else time.time() + 60
        t0 = _seconds(start) if start is not None else t1 - 86400
        return [public_segment(s) for s in self.index.segments(camera, t0, t1)]

    async def make_clip(
        self, camera: str, start: float, end: float, codec: str | None = None
    ) -> Clip:
        """An MP4 of [start, end] (at most an hour). Raises NothingRecorded.

        ``codec="h264"``: H.265 footage comes transcoded (for browsers without H.265).
        """
        return await asyncio.to_thread(self.clips.get, camera, start, end, codec)

    async def clip(
        self,
        camera: str,
        start: datetime | float,
        end: datetime | float,
        codec: str | None = None,
    ) -> Path:
        """The clip's file (for the cascade, which streams it to the parent)."""
        return (await self.make_clip(camera, _seconds(start), _seconds(end), codec)).path

    # -- status ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The disk guard's state for ``/api/v1/health`` (no database call: cheap).

        ``paused``: a camera's recording stopped for lack of space (the gateway is not
        doing its job); ``evicting``: over the limits, the oldest footage is going;
        ``ok``: within the limits.
        """
        with self._lock:
            paused = sorted(w.camera for w in self.workers.values() if w.state == "paused")
        out: dict[str, Any] = {
            "state": "ok",
            "paused_cameras": paused,
            "clip_cache_bytes": self.clips.usage()["bytes"],
        }
        try:
            disk = disk_state(self.root)
            out["free_bytes"] = disk.free
            out["used_percent"] = round(disk.used_percent, 1)
        except OSError:
            out["error"] = "cannot read the recordings filesystem"
        if paused:
            out["state"] = "paused"
        elif self.retention.over_limit():
            out["state"] = "evicting"
        return out

    def status(self) -> dict[str, Any]:
        try:
            disk = disk_state(self.root)
            disk_info = {
                "total_bytes": disk.total,
                "free_bytes": disk.free,
                "used_percent": round(disk.used_percent, 1),
            }
        except OSError:
            disk_info = {}
        with self._lock:
            cams = [w.status() for w in self.workers.values()]
        return {
            "cameras": cams,
            "disk": disk_info,
            "index": store.usage(self.core.db),
            "evicted": self.retention.evicted,
            "evicted_bytes": self.retention.evicted_bytes,
            "recovered": self.recovered,
            "clips": self.clips.usage(),
        }


def _seconds(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def public_segment(seg: dict[str, Any]) -> dict[str, Any]:
    """A segment as the API shows it (no paths)."""
    return {
        "id": seg["id"],
        "camera": seg["camera"],
        "stream": seg["stream"],
        "start": iso(seg["start"]),
        "end": iso(seg["end"]),
        "duration": round(seg["duration"], 3),
        "bytes": seg["bytes"],
        "codec": seg["codec"],
        "width": seg["width"],
        "height": seg["height"],
        "kind": seg["kind"],
        "has_event": bool(seg["has_event"]),
        "locked": bool(seg["locked"]),
        "recording": seg["status"] == "open",
    }


def _join_all(threads: list[threading.Thread | None]) -> None:
    for thread in threads:
        if thread is not None and thread.is_alive():
            thread.join(10)
