"""One camera's recording thread: hub subscription → segments, gaps, pre-roll, disk full.

The thread owns everything about the camera's recording (writer, ring, timers), so
nothing here needs a lock except the hand-off queue that events and ``record_for``
feed (:meth:`CameraRecorder.trigger`).

Times: each access unit gets a wall-clock time from its media time plus the smallest
arrival delay seen in its run (see :meth:`CameraRecorder._wall`). Consecutive
segments of one run therefore join exactly, and a gap appears only where the stream
really broke: epoch change (camera reconnect), stall, a jump in timestamps (dropped
GOPs), a full disk or a gateway restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.config import Settings
from gateway.media.access_unit import AccessUnit
from gateway.recorder.index import RecordingIndex, segment_path
from gateway.recorder.policy import Policy
from gateway.recorder.recovery import probe, trim_to_fragments
from gateway.recorder.retention import Retention
from gateway.recorder.triggers import GopRing, Triggers
from gateway.recorder.triggers import media_time as _media
from gateway.recorder.writer import SegmentWriter, UnsupportedCodec, codec_facts, is_disk_full
from gateway.streams.hub import HubClosed


class Recorder(Protocol):
    """What a camera's worker needs of the recorder (gateway.recorder.service.Recorder)."""

    settings: Settings
    root: Path
    index: RecordingIndex
    retention: Retention

    def acquire(self, camera: str, profile: str) -> Any: ...

    def release(self, lease: Any) -> None: ...

    def mark_event(self, camera: str, start: float, end: float) -> None: ...

    def publish_status(self, camera: str, type_: str, data: dict[str, Any]) -> None: ...

    def worker_finished(self, worker: CameraRecorder) -> None: ...


log = logging.getLogger(__name__)

OFFSET_LEAK = 1e-3  # s per s: far above any camera clock drift, far below a delay burst
CLOCK_STEP_S = 10.0


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
        self, recorder: Recorder, camera: str, policy: Policy, *, transient: bool = False
    ) -> None:
        super().__init__(name=f"recorder:{camera}", daemon=True)
        self.rec = recorder
        self.camera = camera
        self.policy = policy
        self.transient = transient  # started by record_for for a camera not recorded
        self.state = "starting"
        self.last_error = ""
        self.segments_written = 0
        self.bytes_written = 0
        self.errors = 0
        self.dropped = 0
        self._halt = threading.Event()
        self._triggers = Triggers()
        self._seg: _Open | None = None
        self._ring = GopRing()
        self._epoch: int | None = None
        self._offset: float | None = None  # wall clock minus media time, this run
        self._offset_media = 0.0
        self._last_media: float | None = None
        self._interval = 0.04
        self._last_arrival = 0.0
        self._run_end: float | None = None  # end of the last segment of a continuous run
        self._gap_reason = "restart"
        self._pending_gaps: list[tuple[float, float, str]] = []  # not indexed yet (db error)
        self._paused_since: float | None = None
        self._next_space_check = 0.0
        self._bitrate = 4e6 / 8  # bytes per second, learnt from finished segments
        self._hub: Any = None

    # -- called from other threads ------------------------------------------------
    def trigger(
        self, event_id: str | None, start: float, end: float | None, post_s: float | None = None
    ) -> None:
        """Hand an event window over (quick; any thread)."""
        post = self.policy.post_s if post_s is None else post_s
        self._triggers.push(event_id, start, end, post)

    def stop(self) -> None:
        self._halt.set()

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
            last = self._safe(lambda: self.rec.index.last_end(self.camera))
            horizon = time.time() - self.rec.settings.retention.continuous_days * 86400
            if last and last > horizon:
                self._run_end = last  # the gateway was down: that time is a gap
        backoff = 0.5
        while not self._halt.is_set():
            try:
                lease = self.rec.acquire(self.camera, self.policy.stream)
            except Exception as err:  # unknown camera, no stream manager yet, ...
                self.state = "waiting"
                self.last_error = str(err) or type(err).__name__
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
                self.errors += 1
                self.last_error = str(err)
                log.exception("camera %s: recorder failed; restarting", self.camera)
                self._interrupt("error")
                self._halt.wait(1.0)
            finally:
                self.dropped += sub.dropped
                sub.close()
                self.rec.release(lease)
            if self.transient and self._done(time.time()):
                break
        self._interrupt("stopped")
        self.state = "stopped"
        if self.transient:
            self.rec.worker_finished(self)

    def _consume(self, sub: Any) -> None:
        stall_s = max(2.0, self.rec.settings.streams.stall_timeout_s)
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
        if self._epoch is not None and au.epoch != self._epoch:
            self._interrupt("camera_offline")
        elif self._last_media is not None:
            delta = media - self._last_media
            if delta < -0.5 or delta > max(2.0, 4 * self._interval):
                log.info("camera %s: timestamp jump of %.2f s", self.camera, delta)
                self._interrupt("discontinuity")
            elif delta > 0:
                self._interval = 0.9 * self._interval + 0.1 * delta
        self._epoch = au.epoch
        self._last_media = media
        wall = self._wall(au.wallclock, media)
        if not self.policy.continuous:
            self._ring.add(au, self.policy.pre_s)
        if self._paused_since is not None and not self._space_back(wall):
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
            self._safe(
                lambda: self.rec.index.progress(
                    seg.id, seg.start, seg.writer.duration, seg.writer.result().bytes
                )
            )

    def _wall(self, arrival: float, media: float) -> float:
        """Wall-clock time of a unit: media time plus the smallest arrival delay seen.

        Arrival times carry delays (the ingest's probing burst, network jitter); media
        time does not. The smallest ``arrival - media`` is the truest offset. It leaks
        upwards slowly so a camera clock running slow is followed, and a step of the
        wall clock (NTP) re-anchors it.
        """
        off = arrival - media
        if self._offset is None or off - self._offset > CLOCK_STEP_S:
            self._offset = off
        else:
            self._offset += OFFSET_LEAK * max(0.0, media - self._offset_media)
            self._offset = min(self._offset, off)
        self._offset_media = media
        return media + self._offset

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
            for window in new:
                self._safe(lambda w=window: self.rec.mark_event(self.camera, *w))

    # -- segments -------------------------------------------------------------------------
    def _open(
        self, first: AccessUnit, start: float, units: list[AccessUnit], joined: bool = False
    ) -> None:
        """Start a segment with ``units``; ``joined`` when it continues the previous one."""
        rec = self.rec
        expected = int(self._bitrate * self.policy.segment_s)
        if rec.retention.over_limit(expected):
            self._safe(lambda: rec.retention.make_room(expected))
        path = segment_path(rec.root, self.camera, start)
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
        seg_id = self._safe(
            lambda: rec.index.open_segment(
                self.camera, self.policy.stream, path, start, codec, kind
            )
        )
        if seg_id is None:
            writer.abort()
            path.unlink(missing_ok=True)
            return
        try:
            # A database that fails here must neither lose the hole (it is stored again
            # later) nor leave this segment half-open.
            gap_id = None
            if self._run_end is not None and start - self._run_end > 0.5:
                gap_id = self._store_gap(self._run_end, start, self._gap_reason)
            self._run_end = None
            self._seg = _Open(writer, seg_id, start, kind, start, _media(first), not joined, gap_id)
        except BaseException:
            # All or nothing: no open file, no 'open' row retention could never evict.
            writer.abort()
            path.unlink(missing_ok=True)
            self._safe(lambda: rec.index.delete({"id": seg_id, "path": rec.index.rel(path)}))
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
                self.errors += 1
                self.last_error = str(err)
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
                self._run_end = seg.start  # nothing of it survived: the gap starts here
            self._safe(
                lambda: self.rec.index.delete(
                    {"id": seg.id, "path": self.rec.index.rel(result.path)}
                )
            )
            return
        if seg.first_of_run and self._offset is not None:
            # The run's first arrivals came late (probing burst): place it by the
            # smallest delay seen since, which the following segments also use.
            better = seg.first_media + self._offset
            if better < seg.start:
                seg.start = better
                if seg.gap_id is not None:
                    self._safe(lambda: self.rec.index.end_gap(seg.gap_id, better))
        self._retry_gaps()
        has_event = self._triggers.overlaps(seg.start, seg.start + duration)
        self._safe(
            lambda: self.rec.index.close_segment(
                seg.id,
                self.camera,
                seg.start,
                duration,
                size,
                result.width,
                result.height,
                has_event or seg.kind == "event",
            )
        )
        self.segments_written += 1
        self.bytes_written += size
        if duration > 1:
            self._bitrate = size / duration
        if self.policy.continuous:
            self._run_end = seg.start + duration
        log.debug(
            "camera %s: segment %s closed (%s, %.1f s)",
            self.camera,
            result.path,
            why,
            duration,
        )
        if not self.policy.continuous:
            self.state = "armed"

    def _store_gap(self, start: float, end: float, reason: str) -> int | None:
        """Index a hole; one the database refuses is kept and stored later."""
        gap_id = self.rec.index.gap(self.camera, start, end, reason)
        if gap_id is None:
            self._pending_gaps.append((start, end, reason))
            del self._pending_gaps[:-1000]  # bounded, should the database stay down for days
        return gap_id

    def _retry_gaps(self) -> None:
        pending, self._pending_gaps = self._pending_gaps, []
        for start, end, reason in pending:
            if self.rec.index.gap(self.camera, start, end, reason) is None:
                self._pending_gaps.append((start, end, reason))

    def _interrupt(self, reason: str) -> None:
        """The stream broke (or we stop): close the segment; the next one starts a gap."""
        self._close(reason)
        self._gap_reason = reason
        self._offset = None
        self._last_media = None
        self._epoch = None
        self._ring.clear()

    # -- disk full ------------------------------------------------------------------------
    def _disk_full(self, err: BaseException, at: float) -> None:
        if self._seg is not None:
            self._close("disk full", abort=True)
        if self._paused_since is None:
            self._paused_since = at
            self._gap_reason = "disk_full"
            self.state = "paused"
            self.last_error = "disk full / 磁盘满"
            log.error("camera %s: recordings disk is full (%s); recording paused", self.camera, err)
            self.rec.publish_status(self.camera, "recording_paused", {"reason": "disk_full"})
        self._safe(lambda: self.rec.retention.make_room(int(self._bitrate * self.policy.segment_s)))
        self._next_space_check = time.monotonic() + 2

    def _space_back(self, wall: float) -> bool:
        if time.monotonic() < self._next_space_check:
            return False
        self._next_space_check = time.monotonic() + 2
        need = int(self._bitrate * self.policy.segment_s)
        self._safe(lambda: self.rec.retention.make_room(need))
        if not self.rec.retention.has_room(need):
            return False
        log.info("camera %s: disk space is back; recording resumes", self.camera)
        self._paused_since = None
        self._gap_reason = "disk_full"
        self.state = "recording" if self.policy.continuous else "armed"
        self.rec.publish_status(self.camera, "recording_resumed", {})
        return True

    # -- helpers --------------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        self.errors += 1
        if message != self.last_error:
            log.error("camera %s: %s", self.camera, message)
        self.last_error = message
        self.state = "error"

    def _safe(self, fn: Any) -> Any:
        """Run an index/retention call; a database error is logged, never fatal here."""
        try:
            return fn()
        except Exception as err:
            self.errors += 1
            self.last_error = str(err)
            log.warning("camera %s: index update failed: %s", self.camera, err)
            return None
