"""What event recording needs besides the writer: event triggers and the pre-roll ring.

:class:`Triggers` receives event windows from other threads (bus listener,
``record_for``) through a lock-free deque and tells the camera thread whether footage
is wanted now. :class:`GopRing` keeps the last GOPs in memory so a recording can start
``pre_s`` before the event that triggered it.
"""

from __future__ import annotations

import functools
from collections import deque
from fractions import Fraction

from gateway.media.access_unit import AccessUnit

MAX_ONGOING_EVENT_S = 300.0  # an event that never gets its end stops triggering after this
RING_MAX_BYTES = 64 * 1024 * 1024
RING_SLACK_S = 3.0  # ring kept beyond pre_s, for the delay between an event and its trigger


@functools.lru_cache(maxsize=64)
def _seconds_per_tick(time_base: Fraction) -> float:
    return float(time_base)


def media_time(au: AccessUnit) -> float:
    """Decode-order media time in seconds (float maths: this runs for every frame)."""
    return (au.dts if au.dts is not None else au.pts) * _seconds_per_tick(au.time_base)


class Triggers:
    """Event windows of one camera: which are ongoing, until when footage is wanted."""

    def __init__(self) -> None:
        self._inbox: deque[tuple[str | None, float, float | None, float]] = deque(maxlen=1000)
        self.active: dict[str, float] = {}  # ongoing event id -> start
        self.armed_until = 0.0
        self.want_from: float | None = None  # wall time a triggered recording starts from
        self.windows: list[tuple[float, float]] = []  # recent event windows, for has_event

    def push(self, event_id: str | None, start: float, end: float | None, post_s: float) -> None:
        """Hand a window over (any thread; deque appends are atomic)."""
        self._inbox.append((event_id, start, end, post_s))

    def drain(self, now: float, pre_s: float, idle: bool) -> list[tuple[float, float]]:
        """Apply what arrived; returns the new windows. ``idle``: no segment is open."""
        if not self._inbox and not self.active and not self.windows:
            return []  # the common case, once per frame: nothing to do
        new: list[tuple[float, float]] = []
        while self._inbox:
            event_id, start, end, post = self._inbox.popleft()
            if end is None and event_id is not None:
                self.active[event_id] = start
                window = (start - pre_s, start + MAX_ONGOING_EVENT_S)
            else:
                if event_id is not None:
                    self.active.pop(event_id, None)
                stop_at = (end if end is not None else start) + post
                self.armed_until = max(self.armed_until, stop_at)
                window = (start - pre_s, stop_at)
            new.append(window)
            if idle:
                self.want_from = min(self.want_from or window[0], window[0])
        for event_id, start in list(self.active.items()):
            if now - start > MAX_ONGOING_EVENT_S:
                del self.active[event_id]
        self.windows = [w for w in self.windows if w[1] > now - 3600] + new
        return new

    def wanted(self, wall: float) -> bool:
        return bool(self.active) or wall <= self.armed_until

    def over(self, now: float) -> bool:
        """Nothing ongoing and the last window has passed."""
        return not self.active and now > self.armed_until + 1

    def overlaps(self, start: float, end: float) -> bool:
        return any(w[0] < end and w[1] > start for w in self.windows)

    def take_want_from(self) -> float | None:
        want, self.want_from = self.want_from, None
        return want


class GopRing:
    """The last GOPs of a stream, covering at least ``keep_s`` seconds, bounded in bytes."""

    def __init__(self) -> None:
        self._units: deque[AccessUnit] = deque()
        self._bytes = 0
        self.overflows = 0

    def __len__(self) -> int:
        return len(self._units)

    def clear(self) -> None:
        self._units.clear()
        self._bytes = 0

    def add(self, au: AccessUnit, keep_s: float) -> None:
        if not self._units and not au.keyframe:
            return
        self._units.append(au)
        self._bytes += len(au.data)
        horizon = media_time(au) - keep_s - RING_SLACK_S
        # Drop whole GOPs from the front while the next GOP still starts before the horizon.
        while True:
            nxt = next((i for i, x in enumerate(self._units) if i and x.keyframe), None)
            if nxt is None:
                if self._bytes > RING_MAX_BYTES:
                    # One GOP longer than the bound (a camera with a very long GOP):
                    # no pre-roll rather than memory without end.
                    self.overflows += 1
                    self.clear()
                break
            if media_time(self._units[nxt]) > horizon and self._bytes < RING_MAX_BYTES:
                break
            for _ in range(nxt):
                self._bytes -= len(self._units.popleft().data)

    def since(self, wall: float, media: float, want_from: float | None) -> list[AccessUnit]:
        """The ring from the last keyframe at or before wall time ``want_from``.

        ``wall``/``media`` are the times of the newest unit, to convert between them.
        """
        units = list(self._units)
        if want_from is None:
            return units
        want_media = media - (wall - want_from)
        first = 0
        for i, unit in enumerate(units):
            if unit.keyframe and media_time(unit) <= want_media:
                first = i
        return units[first:]
