"""One camera's recording thread: hub subscription → segments, with pre-roll and post-roll.

The thread owns everything about the camera's recording (writer, ring, timers), so
nothing here needs a lock except the hand-off queue that events and ``record_for``
feed (:meth:`CameraRecorder.trigger`). Its other concerns live next door: the wall
clock (:mod:`~gateway.recorder.clock`), the holes between runs
(:mod:`~gateway.recorder.gaps`), a full disk (:mod:`~gateway.recorder.diskguard`) and
its error count (:mod:`~gateway.recorder.faults`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.media.access_unit import AccessUnit
from gateway.recorder.clock import StreamClock
from gateway.recorder.diskguard import DiskGuard
from gateway.recorder.faults import Faults
from gateway.recorder.gaps import Gaps
from gateway.recorder.index import RecordingIndex, segment_path
from gateway.recorder.policy import Policy
from gateway.recorder.recovery import probe, trim_to_fragments
from gateway.recorder.retention import Retention
from gateway.recorder.triggers import GopRing, Triggers
from gateway.recorder.triggers import media_time as _media
from gateway.recorder.writer import SegmentWriter, UnsupportedCodec, codec_facts, is_disk_full
from gateway.streams.hub import Hub, HubClosed, Subscription
from gateway.streams.manager import Lease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Surroundings:
    """What every camera thread of one recorder is given (by ``service.Recorder``)."""

    index: RecordingIndex
    retention: Retention
    acquire: Callable[[str, str], Lease]  # (camera, profile): a lease on the camera's hub
    release: Callable[[Lease], None]
    publish: Callable[[str, str, dict[str, Any]], None]  # (camera, type, data): a status event
    finished: Callable[[CameraRecorder], None]  # a transient thread ended on its own
    continuous_days: float  # how far back a hole since the last recording may reach
    stall_timeout_s: float


@dataclass
class _Open:
    """The segment being written."""

    writer: SegmentWriter
    id: int
    start: float
    kind: str
    last_progress: float
    first_media: float = 0.0
    first_of_run: bool = False
    gap_id: int | None = None  # the gap this segment ends


class CameraRecorder(threading.Thread):
    """Records one camera according to its :class:`Policy` until :meth:`stop`."""

    def __init__(
        self, around: Surroundings, camera: str, policy: Policy, *, transient: bool = False
    ) -> None:
        super().__init__(name=f"recorder:{camera}", daemon=True)
        self.around = around
        self.index = around.index
        self.camera = camera
        self.policy = policy
        self.transient = transient  # started by record_for for a camera not recorded
        self.state = "starting"
        self.segments_written = 0
        self.bytes_written = 0
        self.dropped = 0
        self._faults = Faults(camera)
        self._clock = StreamClock(camera)
        self._gaps = Gaps(around.index, camera)
        self._disk = DiskGuard(camera, policy.segment_s, around.retention, self._faults)
        self._halt = threading.Event()
        self._triggers = Triggers()
        self._seg: _Open | None = None
        self._ring = GopRing()
        self._last_arrival = 0.0
        self._hub: Hub | None = None

    # -- called from other threads ------------------------------------------------
    def trigger(
        self, event_id: str | None, start: float, end: float | None, post_s: float | None = None
    ) -> None:
        """Hand an event window over (quick; any thread)."""
        post = self.policy.post_s if post_s is None else post_s
        self._triggers.push(event_id, start, end, post)

    def stop(self) -> None:
        self._halt.set()

    @property
    def errors(self) -> int:
        return self._faults.errors

    @property
    def last_error(self) -> str:
        return self._faults.last_error

    def status(self) -> dict[str, Any]:
        seg = self._seg
        return {
            "camera": self.camera,
            "mode": self.policy.mode,
            "stream": self.policy.stream,
            "transient": self.transient,
            "state": self.state,
            "segment_id": seg.id if seg else None,
            "segments_written": self.segments_written,
            "bytes_written": self.bytes_written,
            "errors": self.errors,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    # -- the thread ---------------------------------------------------------------------
    def run(self) -> None:
        if self.policy.continuous:
            last = self._faults.safe(lambda: self.index.last_end(self.camera))
            horizon = time.time() - self.around.continuous_days * 86400
            if last and last > horizon:
                self._gaps.run_end = last  # the gateway was down: that time is a gap
        backoff = 0.5
        while not self._halt.is_set():
            try:
                lease = self.around.acquire(self.camera, self.policy.stream)
            except Exception as err:  # unknown camera, no stream manager yet, ...
                self.state = "waiting"
                self._faults.last_error = str(err) or type(err).__name__
                log.debug("camera %s: cannot acquire stream: %s", self.camera, err)
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                self._handle_triggers(time.time())
                if self.transient and self._done(time.time()):
                    break
                continue
            backoff = 0.5
            self._hub = lease.hub
            sub = lease.hub.subscribe(f"recorder:{self.camera}", maxsize=2000)
            try:
                self._consume(sub)
            except Exception as err:
                self._faults.count(err)
                log.exception("camera %s: recorder failed; restarting", self.camera)
                self._interrupt("error")
                self._halt.wait(1.0)
            finally:
                self.dropped += sub.dropped
                sub.close()
                self.around.release(lease)
            if self.transient and self._done(time.time()):
                break
        self._interrupt("stopped")
        self.state = "stopped"
        if self.transient:
            self.around.finished(self)

    def _consume(self, sub: Subscription) -> None:
        stall_s = max(2.0, self.around.stall_timeout_s)
        self.state = "recording" if self.policy.continuous else "armed"
        while not self._halt.is_set():
            now = time.time()
            self._handle_triggers(now)
            try:
                au = sub.get_blocking(0.5)
            except HubClosed:
                self._interrupt("camera_offline")
                self._halt.wait(0.5)
                return
            now = time.time()
            if au is None:
                if self._seg and now - self._last_arrival > stall_s:
                    log.info("camera %s: stream stalled; closing the segment", self.camera)
                    self._interrupt("camera_offline")
                if self._seg and not self.policy.continuous and not self._wanted(now):
                    self._close("post-roll over")
                if self.transient and self._done(now):
                    return
                continue
            self._last_arrival = now
            self._on_au(au)
            if self.transient and self._done(now):
                return

    # -- per access unit ----------------------------------------------------------------
    def _on_au(self, au: AccessUnit) -> None:
        media = _media(au)
        if reason := self._clock.break_before(au.epoch, media):
            self._interrupt(reason)
        wall = self._clock.place(au.epoch, media, au.wallclock)
        if not self.policy.continuous:
            self._ring.add(au, self.policy.pre_s)
        if self._disk.paused and not self._resume():
            return
        wanted = self._wanted(wall)
        seg = self._seg
        if seg is None:
            if wanted and au.keyframe:
                if self.policy.continuous:
                    self._open(au, wall, [au])
                else:
                    units = self._ring.since(wall, media, self._triggers.take_want_from())
                    self._open(units[0], wall - (media - _media(units[0])), units)
            return
        if not wanted:
            self._close("post-roll over")
            return
        if au.keyframe and media - seg.first_media >= self.policy.segment_s:
            self._close("length")
            self._open(au, wall, [au], joined=True)
            return
        self._write(au)
        if au.keyframe and wall - seg.last_progress >= 5 and self._seg is seg:
            seg.last_progress = wall
            self._faults.safe(
                lambda: self.index.progress(
                    seg.id, seg.start, seg.writer.duration, seg.writer.result().bytes
                )
            )

    def _wanted(self, wall: float) -> bool:
        if self.policy.continuous:
            return True
        return self._triggers.wanted(wall)

    def _done(self, now: float) -> bool:
        return self._seg is None and self._triggers.over(now)

    # -- triggers -------------------------------------------------------------------------
    def _handle_triggers(self, now: float) -> None:
        new = self._triggers.drain(now, self.policy.pre_s, idle=self._seg is None)
        if not self.transient or self.policy.continuous:
            for start, end in new:
                self._faults.safe(functools.partial(self.index.mark_event, self.camera, start, end))

    # -- segments -------------------------------------------------------------------------
    def _open(
        self, first: AccessUnit, start: float, units: list[AccessUnit], joined: bool = False
    ) -> None:
        """Start a segment with ``units``; ``joined`` when it continues the previous one."""
        index = self.index
        self._disk.before_segment()
        path = segment_path(index.root, self.camera, start)
        kind = "continuous" if self.policy.continuous else "event"
        codec, parameter_sets = codec_facts(self._hub, first)
        try:
            writer = SegmentWriter(path, first, codec, parameter_sets)
        except UnsupportedCodec as err:
            self._fail(str(err))
            return
        except OSError as err:
            if is_disk_full(err):
                self._disk_full(err, start)
            else:
                self._fail(f"cannot open {path}: {err}")
            return
        seg_id = self._faults.safe(
            lambda: index.open_segment(self.camera, self.policy.stream, path, start, codec, kind)
        )
        if seg_id is None:
            writer.abort()
            path.unlink(missing_ok=True)
            return
        try:
            # A database that fails here must neither lose the hole (it is stored again
            # later) nor leave this segment half-open.
            gap_id = self._gaps.close(start)
            self._seg = _Open(writer, seg_id, start, kind, start, _media(first), not joined, gap_id)
        except BaseException:
            # All or nothing: no open file, no 'open' row retention could never evict.
            writer.abort()
            path.unlink(missing_ok=True)
            self._faults.safe(lambda: index.delete({"id": seg_id, "path": index.rel(path)}))
            raise
        self.state = "recording"
        for au in units:
            self._write(au)
            if self._seg is None:
                break

    def _write(self, au: AccessUnit) -> None:
        seg = self._seg
        assert seg is not None
        try:
            seg.writer.write(au)
        except Exception as err:
            if is_disk_full(err):
                self._disk_full(err, seg.start)
            else:
                self._faults.count(err)
                log.warning(
                    "camera %s: write failed (%s); starting a new segment", self.camera, err
                )
                self._close("error", abort=True)

    def _close(self, why: str, *, abort: bool = False) -> None:
        seg, self._seg = self._seg, None
        if seg is None:
            return
        full: BaseException | None = None
        try:
            result = seg.writer.abort() if abort else seg.writer.close()
        except Exception as err:
            full = err if is_disk_full(err) else None
            log.warning("camera %s: closing segment failed: %s", self.camera, err)
            result = seg.writer.abort()
            abort = True
        size = result.bytes
        duration = result.duration
        if abort:
            # Keep what reached the disk whole: up to the last complete fragment.
            try:
                size, _ = trim_to_fragments(result.path)
                duration = probe(result.path).duration if size else 0.0
            except Exception as err:
                log.warning(
                    "camera %s: torn segment %s unusable: %s", self.camera, result.path, err
                )
                size = 0
        if full is not None:
            self._disk_full(full, seg.start)
        if size == 0 or result.frames == 0:
            if self.policy.continuous:
                self._gaps.run_end = seg.start  # nothing of it survived: the gap starts here
            self._faults.safe(
                lambda: self.index.delete({"id": seg.id, "path": self.index.rel(result.path)})
            )
            return
        offset = self._clock.offset
        if seg.first_of_run and offset is not None:
            # The run's first arrivals came late (probing burst): place it by the
            # smallest delay seen since, which the following segments also use.
            better = seg.first_media + offset
            if better < seg.start:
                seg.start = better
                if (gap_id := seg.gap_id) is not None:
                    self._faults.safe(lambda: self.index.end_gap(gap_id, better))
        self._gaps.retry()
        event = seg.kind == "event" or self._triggers.overlaps(seg.start, seg.start + duration)
        width, height = result.width, result.height
        self._faults.safe(
            lambda: self.index.close_segment(
                seg.id, self.camera, seg.start, duration, size, width, height, event
            )
        )
        self.segments_written += 1
        self.bytes_written += size
        self._disk.learn(size, duration)
        if self.policy.continuous:
            self._gaps.run_end = seg.start + duration
        log.debug(
            "camera %s: segment %s closed (%s, %.1f s)", self.camera, result.path, why, duration
        )
        if not self.policy.continuous:
            self.state = "armed"

    def _interrupt(self, reason: str) -> None:
        """The stream broke (or we stop): close the segment; the next one starts a gap."""
        self._close(reason)
        self._gaps.reason = reason
        self._clock.new_run()
        self._ring.clear()

    # -- disk full ------------------------------------------------------------------------
    def _disk_full(self, err: BaseException, at: float) -> None:
        if self._seg is not None:
            self._close("disk full", abort=True)
        if self._disk.pause(err, at):
            self._gaps.reason = "disk_full"
            self.state = "paused"
            self._faults.last_error = "disk full / 磁盘满"
            self.around.publish(self.camera, "recording_paused", {"reason": "disk_full"})
        self._disk.make_room()

    def _resume(self) -> bool:
        """While paused for a full disk: whether recording resumes with this unit."""
        if not self._disk.space_back():
            return False
        self._gaps.reason = "disk_full"
        self.state = "recording" if self.policy.continuous else "armed"
        self.around.publish(self.camera, "recording_resumed", {})
        return True

    def _fail(self, message: str) -> None:
        self._faults.fail(message)
        self.state = "error"
