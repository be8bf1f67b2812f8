"""B-frame detection from access-unit timestamps, robust to one-off glitches.

A stream with B-frames sends pictures out of presentation order: the presentation
timestamp steps back every few pictures (IBBP: one step back per three pictures), and
the demuxer reports a decode timestamp different from the presentation one. A single
backward step is something else: an RTP timestamp glitch, a late packet, a clock the
camera re-based. (A timestamp the ingest had to invent, for a packet FFmpeg gave none,
is not compared at all: ``feed(..., measured=False)``.) Marking the
stream as having B-frames for such a step would take H.265/H.264 passthrough away from
WebRTC viewers for the whole session.

So reordering counts as B-frames only as a pattern: :data:`NEEDED` units with reorder
evidence within the last :data:`WINDOW` units. Evidence that stays alone is counted in
:attr:`ReorderDetector.glitches` (shown in the stream stats) and otherwise ignored.
"""

from __future__ import annotations

from collections import deque

# A real B-frame stream gives evidence on every second or third unit at least (and a
# differing dts on nearly every unit); two unrelated glitches within this many units
# still do not make a pattern.
WINDOW = 16
NEEDED = 3


class ReorderDetector:
    """Feed each access unit's timestamps in decode order; :attr:`b_frames` tells."""

    def __init__(self, window: int = WINDOW, needed: int = NEEDED) -> None:
        if needed < 2 or window < needed:
            raise ValueError("needed must be at least 2 and at most window")
        self.window = window
        self.needed = needed
        self.b_frames = False  # sticky: B-frames do not go away within a session
        self.glitches = 0  # reorder evidence that stayed alone (not B-frames)
        self._last_pts: int | None = None
        self._count = 0  # units fed
        self._evidence: deque[int] = deque()  # unit numbers with evidence, in the window

    def feed(self, pts: int, dts: int | None, *, measured: bool = True) -> bool:
        """Account for one unit; True once the stream is known to have B-frames.

        ``measured=False``: ``pts`` was made up (the packet had none); it is neither
        evidence nor compared with the next unit's.
        """
        self._count += 1
        if not measured:
            self._last_pts = None
            return self.b_frames
        reordered = (self._last_pts is not None and pts < self._last_pts) or (
            dts is not None and dts != pts
        )
        self._last_pts = pts
        if self.b_frames or not reordered:
            return self.b_frames
        evidence = self._evidence
        evidence.append(self._count)
        while evidence[0] <= self._count - self.window:
            evidence.popleft()
        if len(evidence) >= self.needed:
            # A pattern after all: the earlier steps were not glitches.
            self.glitches -= len(evidence) - 1
            self.b_frames = True
            evidence.clear()
        else:
            self.glitches += 1
        return self.b_frames
