"""Timing of motion events: start delay, gaps, end after quiet, minimum duration, cooldown."""

from __future__ import annotations

import cv2
import numpy as np

from gateway.motion.detector import MotionResult
from gateway.motion.events import EventTracker, snapshot_jpeg

FPS = 5.0


def feed(tracker: EventTracker, motion: list[bool], t0: float = 0.0) -> list[tuple]:
    """Feed one frame per 1/FPS s; return (kind, t, event start, event end)."""
    out = []
    for i, m in enumerate(motion):
        t = t0 + i / FPS
        result = MotionResult(motion=m, score=0.1 if m else 0.0, zones={"gate": 0.2} if m else {})
        for tr in tracker.update(t, result):
            out.append((tr.kind, round(t, 2), round(tr.event.start, 2), tr.event.end))
    return out


def frames(*spans: tuple[bool, float]) -> list[bool]:
    """(motion?, seconds) spans at FPS."""
    return [m for m, secs in spans for _ in range(round(secs * FPS))]


def test_event_starts_once_motion_persisted_start_after() -> None:
    tracker = EventTracker(start_after_s=0.4, end_after_s=3.0)
    got = feed(tracker, frames((False, 1), (True, 2)))
    assert got[0][:3] == ("start", 1.4, 1.0)  # announced at 1.4 s, dated 1.0 s
    assert [k for k, *_ in got] == ["start"]


def test_single_noisy_frames_never_start_an_event() -> None:
    tracker = EventTracker(start_after_s=0.3, end_after_s=3.0)
    assert feed(tracker, frames((True, 0.2), (False, 1.0)) * 5) == []
    assert tracker.current is None


def test_start_after_zero_starts_on_the_first_frame() -> None:
    tracker = EventTracker(start_after_s=0.0)
    assert feed(tracker, [True])[0][:2] == ("start", 0.0)


def test_event_ends_after_quiet_time_dated_at_last_motion() -> None:
    tracker = EventTracker(start_after_s=0.2, end_after_s=2.0, cooldown_s=0)
    got = feed(tracker, frames((True, 3), (False, 5)))
    kinds = [g[0] for g in got]
    assert kinds[0] == "start" and kinds[-1] == "end"
    end = got[-1]
    assert end[1] == 4.8  # last motion at 2.8 s + 2 s quiet
    assert round(end[3], 2) == 2.8


def test_short_gaps_keep_one_event() -> None:
    tracker = EventTracker(start_after_s=0.2, end_after_s=2.0)
    got = feed(tracker, frames((True, 2), (False, 1.4), (True, 2), (False, 3)))
    assert [g[0] for g in got].count("start") == 1
    assert [g[0] for g in got].count("end") == 1


def test_min_duration_suppresses_short_events() -> None:
    tracker = EventTracker(start_after_s=0.2, end_after_s=1.0, min_duration_s=2.0)
    assert feed(tracker, frames((True, 1.0), (False, 3))) == []
    got = feed(tracker, frames((True, 3.0), (False, 3)), t0=10)
    assert got[0][:3] == ("start", 12.0, 10.0)


def test_cooldown_holds_off_the_next_event() -> None:
    tracker = EventTracker(start_after_s=0.2, end_after_s=1.0, cooldown_s=5.0)
    got = feed(tracker, frames((True, 1), (False, 1), (True, 2), (False, 4), (True, 2)))
    starts = [g for g in got if g[0] == "start"]
    # Event 1 (motion 0-0.8 s) ends at 1.8 s; the motion at 2-3.8 s falls in the
    # cooldown (until 6.8 s) and is ignored; the motion from 8 s starts event 2.
    assert [s[2] for s in starts] == [0.0, 8.0]


def test_flush_ends_an_open_event_and_drops_a_candidate() -> None:
    tracker = EventTracker(start_after_s=0.2)
    feed(tracker, frames((True, 1)))
    (tr,) = tracker.flush(1.0)
    assert tr.kind == "end" and tr.event.end == 0.8
    tracker = EventTracker(start_after_s=5)
    feed(tracker, frames((True, 1)))
    assert tracker.flush(1.0) == []


def test_event_keeps_peak_score_zones_and_boxes() -> None:
    tracker = EventTracker(start_after_s=0.0, end_after_s=1.0, cooldown_s=0)
    scores = [0.05, 0.3, 0.1]
    for i, s in enumerate(scores):
        tracker.update(i * 0.2, MotionResult(True, s, {f"z{i}": s}, [(0.1 * i, 0, 0.1, 0.1)]))
    (tr,) = tracker.update(2.0, MotionResult())
    ev = tr.event
    assert ev.peak_score == 0.3 and ev.peak_time == 0.2
    assert ev.peak_boxes == [(0.1, 0, 0.1, 0.1)]
    assert ev.zones == {"z0", "z1", "z2"}


def test_snapshot_has_the_boxes_drawn() -> None:
    grey = np.full((360, 640), 100, np.uint8)
    jpeg = snapshot_jpeg(grey, [(0.25, 0.25, 0.5, 0.5)])
    assert jpeg[:2] == b"\xff\xd8"
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3)
    b, g, r = (int(v) for v in img[91, 320])  # on the top edge of the box
    assert r > 180 and b < 80 and g < 80
    b, g, r = (int(v) for v in img[180, 320])  # inside: untouched grey
    assert abs(r - 100) < 10 and abs(b - 100) < 10
