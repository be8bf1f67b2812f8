"""A camera run's wall clock: media time placed in wall-clock time, and where the run breaks.

Each access unit gets a wall-clock time from its media time plus the smallest arrival
delay seen in its run (:meth:`StreamClock.place`). Consecutive segments of one run
therefore join exactly, and a run ends only where the stream really broke: an epoch
change (camera reconnect) or a jump in timestamps (dropped GOPs) here; a stall, a full
disk or a gateway restart in the camera's thread.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

OFFSET_LEAK = 1e-3  # s per s: far above any camera clock drift, far below a delay burst
CLOCK_STEP_S = 10.0


class StreamClock:
    """Media time → wall-clock time for one camera, run by run (one thread's own)."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.offset: float | None = None  # wall clock minus media time, this run
        self._offset_media = 0.0
        self._last_media: float | None = None
        self._epoch: int | None = None
        self._interval = 0.04  # frame interval, learnt (the jump threshold scales with it)

    def break_before(self, epoch: int, media: float) -> str | None:
        """Why the run ends before this unit (``camera_offline``, ``discontinuity``), or None."""
        if self._epoch is not None and epoch != self._epoch:
            return "camera_offline"
        if self._last_media is not None:
            delta = media - self._last_media
            if delta < -0.5 or delta > max(2.0, 4 * self._interval):
                log.info("camera %s: timestamp jump of %.2f s", self.camera, delta)
                return "discontinuity"
            if delta > 0:
                self._interval = 0.9 * self._interval + 0.1 * delta
        return None

    def place(self, epoch: int, media: float, arrival: float) -> float:
        """Wall-clock time of a unit: media time plus the smallest arrival delay seen.

        Arrival times carry delays (the ingest's probing burst, network jitter); media
        time does not. The smallest ``arrival - media`` is the truest offset. It leaks
        upwards slowly so a camera clock running slow is followed, and a step of the
        wall clock (NTP) re-anchors it.
        """
        self._epoch = epoch
        self._last_media = media
        off = arrival - media
        if self.offset is None or off - self.offset > CLOCK_STEP_S:
            self.offset = off
        else:
            self.offset += OFFSET_LEAK * max(0.0, media - self._offset_media)
            self.offset = min(self.offset, off)
        self._offset_media = media
        return media + self.offset

    def new_run(self) -> None:
        """The stream broke: the next unit starts a run of its own."""
        self.offset = None
        self._last_media = None
        self._epoch = None
