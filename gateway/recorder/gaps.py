"""The holes in a camera's continuous recording: where each starts, why, and its index row.

A hole opens where a continuous run ends (camera offline, timestamp jump, full disk,
error, gateway stopped) and is indexed when the next segment starts. A hole the
database refuses is kept and stored again later, so none goes missing.
"""

from __future__ import annotations

from gateway.recorder.index import RecordingIndex

MIN_GAP_S = 0.5  # closer than this, two segments join
MAX_PENDING = 1000  # bounded, should the database stay down for days


class Gaps:
    """One camera's open hole and those still to be indexed (one thread's own)."""

    def __init__(self, index: RecordingIndex, camera: str) -> None:
        self.index = index
        self.camera = camera
        self.run_end: float | None = None  # end of the last segment of a continuous run
        self.reason = "restart"  # why the current hole opened
        self._pending: list[tuple[float, float, str]] = []  # not indexed yet (db error)

    def close(self, start: float) -> int | None:
        """A segment starts at ``start``: index the hole before it, if any; its id."""
        gap_id = None
        if self.run_end is not None and start - self.run_end > MIN_GAP_S:
            gap_id = self._store(self.run_end, start, self.reason)
        self.run_end = None
        return gap_id

    def retry(self) -> None:
        """Store again the holes the database refused."""
        pending, self._pending = self._pending, []
        for start, end, reason in pending:
            if self.index.gap(self.camera, start, end, reason) is None:
                self._pending.append((start, end, reason))

    def _store(self, start: float, end: float, reason: str) -> int | None:
        gap_id = self.index.gap(self.camera, start, end, reason)
        if gap_id is None:
            self._pending.append((start, end, reason))
            del self._pending[:-MAX_PENDING]
        return gap_id
