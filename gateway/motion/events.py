"""Event logic: turns a stream of per-frame motion results into motion events.

An event starts when motion has persisted for ``start_after_s`` (brief drop-outs of
up to ``gap_s`` do not break the run) and has spanned at least ``min_duration_s``;
it ends after ``end_after_s`` without motion, its end being the last frame that
showed motion. After an event, ``cooldown_s`` passes before the next may begin.
A candidate that goes quiet before it is confirmed is dropped without a word, so
a single noisy frame never becomes an event.

Times are seconds on whatever clock the caller feeds (frame wall-clock times in the
worker, frame index / fps in the tests); the tracker never reads a clock itself.

Also here: drawing boxes on a snapshot and encoding it as JPEG (off the hot path:
only when an event starts or ends).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from gateway.config import MotionSettings
from gateway.events.model import new_event_id
from gateway.motion.detector import Box, MotionResult


@dataclass(slots=True)
class MotionEvent:
    """One motion event as the tracker sees it (seconds on the caller's clock)."""

    id: str
    start: float
    last_motion: float
    end: float | None = None
    peak_score: float = 0.0
    peak_time: float = 0.0
    peak_boxes: list[Box] = field(default_factory=list)
    zones: set[str] = field(default_factory=set)
    announced: bool = False

    @property
    def duration(self) -> float:
        return (self.end if self.end is not None else self.last_motion) - self.start


EPS = 1e-6
Kind = Literal["start", "peak", "end"]


@dataclass(frozen=True, slots=True)
class Transition:
    """Something the caller must act on: publish a start or an end, or keep a peak frame."""

    kind: Kind
    event: MotionEvent


class EventTracker:
    """Feed it ``update(t, result)`` for every analysed frame, in time order."""

    def __init__(
        self,
        *,
        start_after_s: float = 0.3,
        end_after_s: float = 3.0,
        min_duration_s: float = 0.0,
        cooldown_s: float = 2.0,
        gap_s: float = 0.5,
        peak_every_s: float = 1.0,
    ) -> None:
        self.start_after_s = start_after_s
        self.end_after_s = end_after_s
        self.min_duration_s = min_duration_s
        self.cooldown_s = cooldown_s
        self.gap_s = gap_s
        self.peak_every_s = peak_every_s
        self.current: MotionEvent | None = None
        self._run_start = 0.0
        self._cooldown_until = float("-inf")
        self._last_peak_sent = float("-inf")
        self.finished: list[MotionEvent] = []  # announced events that ended (bounded)

    @classmethod
    def from_settings(cls, settings: MotionSettings) -> EventTracker:
        return cls(
            start_after_s=settings.start_after_s,
            end_after_s=settings.end_after_s,
            min_duration_s=settings.min_duration_s,
            cooldown_s=settings.cooldown_s,
        )

    def update(self, t: float, result: MotionResult) -> list[Transition]:
        """Advance to time ``t`` with this frame's result; return what happened."""
        ev = self.current
        if ev is None:
            if not result.motion or t < self._cooldown_until:
                return []
            ev = self.current = MotionEvent(id=new_event_id(), start=t, last_motion=t)
            self._run_start = t
            self._absorb(ev, t, result)
            return self._maybe_announce(ev, t)

        if result.motion:
            if t - ev.last_motion > self.gap_s and not ev.announced:
                # The run broke before it was confirmed: start counting again.
                ev.start = self._run_start = t
                ev.peak_score, ev.zones = 0.0, set()
            ev.last_motion = t
            peak = self._absorb(ev, t, result)
            out = self._maybe_announce(ev, t)
            if ev.announced and peak and not out and t - self._last_peak_sent >= self.peak_every_s:
                self._last_peak_sent = t
                out.append(Transition("peak", ev))
            return out

        quiet = t - ev.last_motion
        if not ev.announced:
            if quiet > self.gap_s:
                self.current = None
            return []
        if quiet + EPS >= self.end_after_s:
            return [self._finish(ev, t)]
        return []

    def flush(self, t: float) -> list[Transition]:
        """End any open event now (stream ended, camera removed, shutting down)."""
        ev = self.current
        if ev is None:
            return []
        self.current = None
        if not ev.announced:
            return []
        return [self._finish(ev, t)]

    # -- internals -------------------------------------------------------------
    def _absorb(self, ev: MotionEvent, t: float, result: MotionResult) -> bool:
        ev.zones.update(result.zones)
        if result.score > ev.peak_score:
            ev.peak_score = result.score
            ev.peak_time = t
            ev.peak_boxes = list(result.boxes)
            return True
        return False

    def _maybe_announce(self, ev: MotionEvent, t: float) -> list[Transition]:
        if ev.announced:
            return []
        # EPS: frame times are sums of 1/fps steps and must not miss a boundary by 1e-16.
        if (
            t - self._run_start + EPS < self.start_after_s
            or t - ev.start + EPS < self.min_duration_s
        ):
            return []
        ev.announced = True
        self._last_peak_sent = t
        return [Transition("start", ev)]

    def _finish(self, ev: MotionEvent, t: float) -> Transition:
        ev.end = ev.last_motion
        self.current = None
        self._cooldown_until = t + self.cooldown_s
        self.finished.append(ev)
        del self.finished[:-100]
        return Transition("end", ev)


def draw_boxes(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Draw ``boxes`` (0..1 coordinates) on a copy of a BGR or grey picture."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    thick = max(2, round(min(w, h) / 180))  # survives JPEG's chroma subsampling
    for x, y, bw, bh in boxes:
        p0 = (round(x * w), round(y * h))
        p1 = (round((x + bw) * w) - 1, round((y + bh) * h) - 1)
        cv2.rectangle(out, p0, p1, (0, 0, 255), thick)
    return out


def snapshot_jpeg(image: np.ndarray, boxes: list[Box], quality: int = 80) -> bytes:
    """A JPEG of ``image`` with the boxes drawn."""
    ok, buf = cv2.imencode(".jpg", draw_boxes(image, boxes), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
