"""One camera's motion worker: hub subscription → decoder thread → detector → events.

The worker thread decodes every access unit (H.264/H.265 P-frames are references:
skipping one corrupts the picture until the next keyframe) but analyses only the
frames due at the configured analysis rate, paced by the stream's own timestamps.
While the analysis rate is at most half the stream rate it asks the decoder to skip
non-reference frames (``skip_frame="NONREF"``), which costs nothing in quality, and
turns that off again if the stream turns out to have too few decodable frames left.

The luma plane is read in place (``np.frombuffer`` on the frame's plane, ~10 µs);
colour conversion happens only for a snapshot, when an event starts or peaks.
Events leave through ``on_event(Event, jpeg)``, called in the worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from gateway.config import MotionSettings
from gateway.events.model import Event
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.media.avcodec import video_context
from gateway.motion.detector import FrameDiffDetector, MotionDetector
from gateway.motion.events import EventTracker, MotionEvent, Transition, snapshot_jpeg
from gateway.streams.hub import Hub, HubClosed, Subscription

log = logging.getLogger(__name__)

EventSink = Callable[[Event, bytes | None], Any]
# Called with every analysed frame and its wall-clock time (diagnosis reads the same frames).
FrameTap = Callable[[av.VideoFrame, float], None]
# Planar 8-bit formats whose plane 0 is the luma plane.
_Y_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21")
_QUEUE = 50  # access units buffered: two seconds at 25 fps; beyond, whole GOPs drop


def luma_plane(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a decoded frame as a (height, width) uint8 view, without copying."""
    if frame.format.name in _Y_FIRST or frame.format.name == "gray":
        plane = frame.planes[0]
        h, stride = frame.height, plane.line_size
        rows = np.frombuffer(memoryview(plane), np.uint8, count=h * stride).reshape(h, stride)
        return rows[:, : frame.width]
    return frame.to_ndarray(format="gray")  # high bit depth or packed: rare, slower


class MotionWorker:
    """Runs motion detection for one camera stream in its own thread."""

    def __init__(
        self,
        camera_id: str,
        settings: MotionSettings,
        hub: Hub,
        on_event: EventSink,
        *,
        source: str = "",
        detector_factory: Callable[[MotionSettings, float], MotionDetector] | None = None,
        taps: Sequence[FrameTap] = (),
    ) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self.hub = hub
        self.on_event = on_event
        self.source = source
        self._factory = detector_factory or (lambda s, fps: FrameDiffDetector(s, fps=fps))
        self.taps = list(taps)
        self.tap_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sub: Subscription | None = None
        self.tracker = EventTracker.from_settings(settings)
        self.detector: MotionDetector | None = None
        # counters, read by stats()
        self.decoded = 0
        self.analysed = 0
        self.decode_errors = 0
        self.detect_errors = 0
        self.events = 0
        self.cpu_s = 0.0
        self.started_at = 0.0
        self.last_result_at = 0.0
        self.last_error = ""
        self._last_t = 0.0  # time of the last analysed frame
        self._snap: tuple[np.ndarray, list] | None = None  # picture and boxes for the snapshot

    # -- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        self._sub = self.hub.subscribe(f"motion:{self.camera_id}", _QUEUE)
        self.started_at = time.time()
        self._thread = threading.Thread(
            target=self._main, name=f"motion-{self.camera_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; an open event is ended now. Safe to call twice."""
        self._stop.set()
        if self._sub is not None:
            self._sub.close()  # wakes get_blocking with HubClosed
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s: motion thread did not stop within %.0f s", self.camera_id, timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        uptime = max(1e-9, time.time() - self.started_at) if self.started_at else 0.0
        return {
            "camera": self.camera_id,
            "running": self.running,
            "decoded": self.decoded,
            "analysed": self.analysed,
            "decode_errors": self.decode_errors,
            "events": self.events,
            "cpu_percent": round(100 * self.cpu_s / uptime, 2) if uptime else 0.0,
            "dropped": self._sub.dropped if self._sub is not None else 0,
            "event_open": self.tracker.current is not None and self.tracker.current.announced,
            "last_error": self.last_error,
        }

    # -- the thread ----------------------------------------------------------------
    def _main(self) -> None:
        cpu0 = time.thread_time()
        try:
            self._loop(cpu0)
        except HubClosed:
            pass
        except Exception as err:  # a bug must not die silently: log it and say so in stats
            self.last_error = f"{type(err).__name__}: {err}"
            log.exception("%s: motion worker failed", self.camera_id)
        finally:
            self._emit(self.tracker.flush(self._last_t or time.time()))
            self.cpu_s = time.thread_time() - cpu0

    def _loop(self, cpu0: float) -> None:
        assert self._sub is not None
        decoder: VideoCodecContext | None = None
        epoch: int | None = None
        failed_epoch: int | None = None  # no decoder for this connection: skip it
        next_due = 0.0  # stream seconds of the next frame to analyse
        fps = self.settings.fps
        window_start, window_frames = 0.0, 0
        while not self._stop.is_set():
            au = self._sub.get_blocking(0.5)
            self.cpu_s = time.thread_time() - cpu0
            if au is None:
                self._idle(time.time())
                continue
            info = self.hub.info
            if decoder is None or au.epoch != epoch:
                if info is None or not au.keyframe or au.epoch == failed_epoch:
                    continue
                try:
                    decoder = self._decoder(info)
                except (ValueError, av.FFmpegError) as err:  # e.g. a codec FFmpeg lacks
                    failed_epoch, decoder = au.epoch, None
                    self.last_error = f"cannot decode {info.codec}: {err}"
                    log.warning("%s: motion %s", self.camera_id, self.last_error)
                    continue
                epoch, next_due = au.epoch, 0.0
                fps = min(self.settings.fps, info.fps or self.settings.fps)
                if self.detector is None:
                    self.detector = self._factory(self.settings, fps)
                else:
                    self.detector.reset()
                window_start, window_frames = au.wallclock, 0
            frames = self._decode(decoder, au)
            for frame in frames:
                self.decoded += 1
                window_frames += 1
                pts = (
                    au.seconds
                    if frame.pts is None or frame.time_base is None
                    else float(frame.pts * frame.time_base)
                )
                if pts < next_due - 0.01:  # not due yet (10 ms of timestamp jitter allowed)
                    continue
                step = 1.0 / fps
                # Stay on the grid, unless timestamps jumped ahead (then restart from here).
                next_due = next_due + step if pts < next_due + step else pts + step
                self._analyse(frame, au.wallclock)
            if au.wallclock - window_start >= 2.0:
                self._check_skip(decoder, window_frames / (au.wallclock - window_start), fps)
                window_start, window_frames = au.wallclock, 0

    def _decoder(self, info: StreamInfo) -> VideoCodecContext:
        ctx = video_context(info.codec, "r")
        if info.extradata:
            ctx.extradata = info.extradata
        ctx.thread_count = 1  # one camera, one core share: threads only add latency
        if info.fps and self.settings.fps * 2 <= info.fps:
            ctx.skip_frame = "NONREF"
        log.info(
            "%s: motion on %s %dx%d @ %.1f fps, analysing %.1f fps",
            self.camera_id,
            info.codec,
            info.width,
            info.height,
            info.fps,
            min(self.settings.fps, info.fps or self.settings.fps),
        )
        return ctx

    def _check_skip(self, decoder: VideoCodecContext, decoded_fps: float, fps: float) -> None:
        """Keep NONREF skipping only while enough frames are left to analyse."""
        if decoder.skip_frame == "NONREF" and decoded_fps < fps * 1.5:
            decoder.skip_frame = "DEFAULT"
            log.info("%s: few reference frames; decoding all frames", self.camera_id)

    def _decode(self, decoder: VideoCodecContext, au: AccessUnit) -> list[av.VideoFrame]:
        packet = av.Packet(au.data)
        packet.pts, packet.dts, packet.time_base = au.pts, au.dts, au.time_base
        try:
            return decoder.decode(packet)
        except av.FFmpegError as err:
            self.decode_errors += 1
            if self.decode_errors in (1, 10, 100) or self.decode_errors % 1000 == 0:
                log.warning("%s: decode error #%d: %s", self.camera_id, self.decode_errors, err)
            return []

    def _analyse(self, frame: av.VideoFrame, t: float) -> None:
        assert self.detector is not None
        try:
            result = self.detector.detect(luma_plane(frame))
        except ValueError as err:
            self.detect_errors += 1
            if self.detect_errors == 1:
                log.warning("%s: cannot analyse frames: %s", self.camera_id, err)
                self.last_error = str(err)
            return
        self.analysed += 1
        self._last_t = self.last_result_at = t
        transitions = self.tracker.update(t, result)
        if any(tr.kind in ("start", "peak") for tr in transitions):
            # Keep the picture and its boxes: the start snapshot now, the peak one at the end.
            self._snap = (frame.to_ndarray(format="bgr24"), list(result.boxes))
        self._emit(transitions)
        for tap in self.taps:
            try:
                tap(frame, t)
            except Exception:  # a tap must never stop motion detection
                self.tap_errors += 1
                if self.tap_errors in (1, 100) or self.tap_errors % 10000 == 0:
                    log.exception("%s: frame tap failed (#%d)", self.camera_id, self.tap_errors)

    def _idle(self, now: float) -> None:
        """No frames: end an open event once the stream has been silent long enough."""
        ev = self.tracker.current
        if ev is not None and self._last_t and now - self._last_t >= self.settings.end_after_s:
            self._emit(self.tracker.flush(ev.last_motion))

    def _emit(self, transitions: list[Transition]) -> None:
        for tr in transitions:
            if tr.kind == "peak":
                continue
            ev = tr.event
            jpeg = None
            if self._snap is not None:
                try:
                    jpeg = snapshot_jpeg(*self._snap)
                except Exception as err:  # a snapshot must never lose the event
                    log.warning("%s: snapshot failed: %s", self.camera_id, err)
            if tr.kind == "end":
                self._snap = None
            else:
                self.events += 1
            try:
                self.on_event(self._event(ev), jpeg)
            except Exception:
                log.exception("%s: publishing motion event %s failed", self.camera_id, ev.id)

    def _event(self, ev: MotionEvent) -> Event:
        return Event(
            id=ev.id,
            camera=self.camera_id,
            type="motion",
            start=datetime.fromtimestamp(ev.start, UTC),
            end=datetime.fromtimestamp(ev.end, UTC) if ev.end is not None else None,
            score=round(ev.peak_score, 4),
            zones=sorted(ev.zones),
            boxes=[[round(v, 4) for v in box] for box in ev.peak_boxes],
            snapshot_url=f"/api/v1/events/{ev.id}/snapshot.jpg",
            source=self.source,
            data={"stream": self.hub.key},
        )
