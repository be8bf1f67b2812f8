"""Event-level accuracy on the synthetic clips, and the OpenCV reference detector.

Used by ``tests/test_motion_accuracy.py`` and ``bench/bench_motion.py``; the
reference is the textbook OpenCV pipeline the issue compares against (resize →
Gaussian blur → accumulateWeighted → absdiff → threshold → dilate → findContours).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from gateway.config import MotionSettings
from gateway.motion.clips import Clip, Interval
from gateway.motion.detector import WORK_WIDTH, MotionDetector, MotionResult, rasterise
from gateway.motion.events import EventTracker, MotionEvent

DetectorFactory = Callable[[MotionSettings, float], MotionDetector]


@dataclass(frozen=True, slots=True)
class ClipScore:
    """How a detector did on one clip."""

    clip: str
    events: list[Interval]
    truth: list[Interval]
    true_events: int  # events overlapping some truth interval
    found: int  # truth intervals overlapped by some event

    @property
    def false_events(self) -> int:
        return len(self.events) - self.true_events


def run_clip(clip: Clip, factory: DetectorFactory) -> list[MotionEvent]:
    """Run a detector and the event tracker over a clip; return the announced events."""
    detector = factory(clip.settings, clip.fps)
    tracker = EventTracker.from_settings(clip.settings)
    events: list[MotionEvent] = []
    t = 0.0
    for t, luma in clip.frames():
        for tr in tracker.update(t, detector.detect(luma)):
            if tr.kind == "end":
                events.append(tr.event)
    events += [tr.event for tr in tracker.flush(t)]
    return events


def score(clip: Clip, events: list[MotionEvent], slack: float = 1.0) -> ClipScore:
    """Match events to truth intervals: they match when they overlap (± ``slack`` s)."""
    spans = [(e.start, e.end if e.end is not None else e.last_motion) for e in events]
    truth = clip.truth

    def overlaps(a: Interval, b: Interval) -> bool:
        return a[0] <= b[1] + slack and a[1] >= b[0] - slack

    true_events = sum(1 for s in spans if any(overlaps(s, g) for g in truth))
    found = sum(1 for g in truth if any(overlaps(s, g) for s in spans))
    return ClipScore(clip.name, spans, truth, true_events, found)


def totals(scores: list[ClipScore]) -> dict[str, float]:
    """Event-level precision and recall over all clips, and the false events on quiet ones."""
    events = sum(len(s.events) for s in scores)
    true_events = sum(s.true_events for s in scores)
    truth = sum(len(s.truth) for s in scores)
    found = sum(s.found for s in scores)
    return {
        "events": events,
        "truth": truth,
        "precision": true_events / events if events else 1.0,
        "recall": found / truth if truth else 1.0,
        "quiet_false_events": sum(len(s.events) for s in scores if not s.truth),
    }


class OpenCVReference(MotionDetector):
    """The textbook OpenCV motion pipeline at the same working size as ours.

    Its threshold (12 grey levels after a 5×5 blur) was tuned on these clips to
    give it its best showing; a fixed threshold is exactly what it cannot adapt.
    """

    def __init__(
        self,
        settings: MotionSettings | None = None,
        fps: float = 5.0,
        *,
        threshold: int = 12,
        alpha: float = 0.1,
        work_width: int = WORK_WIDTH,
    ) -> None:
        self.settings = settings or MotionSettings()
        self.threshold = threshold
        self.alpha = alpha
        self.work_width = work_width
        self._avg: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self._keep: np.ndarray | None = None
        self._min_px = 0

    def reset(self) -> None:
        self._avg = None

    def detect(self, luma: np.ndarray) -> MotionResult:
        h, w = luma.shape
        factor = max(1, round(w / self.work_width))
        size = (w // factor, h // factor)
        if size != self._size:
            self._size = size
            self._avg = None
            keep = np.full((size[1], size[0]), 255, np.uint8)
            for poly in self.settings.masks:
                keep[rasterise(poly, keep.shape)] = 0
            self._keep = keep
            self._min_px = max(2, round(self.settings.min_area * size[0] * size[1]))
        small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA)
        blur = cv2.GaussianBlur(small, (5, 5), 0)
        if self._avg is None:
            self._avg = blur.astype(np.float32)
            return MotionResult()
        cv2.accumulateWeighted(blur, self._avg, self.alpha)
        delta = cv2.absdiff(blur, cv2.convertScaleAbs(self._avg))
        _, mask = cv2.threshold(delta, self.threshold, 255, cv2.THRESH_BINARY)
        if self._keep is not None:
            mask = cv2.bitwise_and(mask, self._keep)
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        boxes, area = [], 0.0
        for c in contours:
            a = cv2.contourArea(c)
            if a < self._min_px:
                continue
            area += a
            x, y, bw, bh = cv2.boundingRect(c)
            boxes.append((x / size[0], y / size[1], bw / size[0], bh / size[1]))
        return MotionResult(motion=bool(boxes), score=area / (size[0] * size[1]), boxes=boxes)
