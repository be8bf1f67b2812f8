"""A camera's recording against a full disk: make room first, pause when full, resume.

Before each segment the guard makes room for it when it would overrun the retention
limits. A write that fails for lack of space pauses the camera; while paused it makes
room and checks for space every couple of seconds, and recording resumes once a
segment fits again.
"""

from __future__ import annotations

import logging
import time

from gateway.recorder.faults import Faults
from gateway.recorder.retention import Retention

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0


class DiskGuard:
    """The disk-full state of one camera's recording (one thread's own)."""

    def __init__(self, camera: str, segment_s: float, retention: Retention, faults: Faults) -> None:
        self.camera = camera
        self.segment_s = segment_s
        self.retention = retention
        self.faults = faults
        self.paused_since: float | None = None
        self.bitrate = 4e6 / 8  # bytes per second, learnt from finished segments
        self._next_check = 0.0

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def segment_bytes(self) -> int:
        """The expected size of the next segment."""
        return int(self.bitrate * self.segment_s)

    def before_segment(self) -> None:
        """Make room for the next segment when it would overrun the limits."""
        expected = self.segment_bytes()
        if self.retention.over_limit(expected):
            self.faults.safe(lambda: self.retention.make_room(expected))

    def learn(self, size: int, duration: float) -> None:
        """A segment was finished: its bitrate predicts the next one's size."""
        if duration > 1:
            self.bitrate = size / duration

    def pause(self, err: BaseException, at: float) -> bool:
        """The disk is full at wall time ``at``; True when this pauses the camera."""
        if self.paused_since is not None:
            return False
        self.paused_since = at
        log.error("camera %s: recordings disk is full (%s); recording paused", self.camera, err)
        return True

    def make_room(self) -> None:
        """Evict for the next segment; space is checked again ``CHECK_EVERY_S`` from now."""
        self.faults.safe(lambda: self.retention.make_room(self.segment_bytes()))
        self._next_check = time.monotonic() + CHECK_EVERY_S

    def space_back(self) -> bool:
        """While paused: whether a segment fits again (checked every ``CHECK_EVERY_S``)."""
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + CHECK_EVERY_S
        need = self.segment_bytes()
        self.faults.safe(lambda: self.retention.make_room(need))
        if not self.retention.has_room(need):
            return False
        log.info("camera %s: disk space is back; recording resumes", self.camera)
        self.paused_since = None
        return True
