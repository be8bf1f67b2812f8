"""Retention: age limits per kind of footage and a disk guard that evicts the oldest.

Age: continuous footage older than ``continuous_days`` and event footage older than
``event_days`` goes. Disk: while the recordings filesystem is above
``max_usage_percent`` or below ``min_free_mb`` free, the oldest unlocked finished
segment (any camera) goes. Locked (protected) footage is never removed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.config import RetentionSettings
from gateway.recorder.index import RecordingIndex
from gateway.store import recordings as store

log = logging.getLogger(__name__)


@dataclass
class DiskState:
    total: int
    free: int

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total - self.free) / self.total if self.total else 0.0


def disk_state(path: Path) -> DiskState:
    """Space of the filesystem holding ``path`` (free as seen by unprivileged users)."""
    st = os.statvfs(path)
    return DiskState(total=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)


class Retention:
    """Applies the retention settings to one recordings directory. Thread-safe."""

    def __init__(self, index: RecordingIndex, settings: RetentionSettings) -> None:
        self.index = index
        self.settings = settings
        self.evicted = 0
        self.evicted_bytes = 0
        self._lock = threading.Lock()
        # Space that is not footage (the clip cache): given back before any footage goes.
        self._reclaimers: list[Callable[[], int]] = []

    def add_reclaimer(self, reclaim: Callable[[], int]) -> None:
        """``reclaim()`` frees what it can and returns the bytes freed."""
        self._reclaimers.append(reclaim)

    def over_limit(self, extra_bytes: int = 0) -> bool:
        """Whether the disk is beyond the limits (with ``extra_bytes`` more written)."""
        try:
            disk = disk_state(self.index.root)
        except OSError:
            return False
        if disk.total == 0:
            return False
        free = disk.free - extra_bytes
        used = 100.0 * (disk.total - free) / disk.total
        return used > self.settings.max_usage_percent or free < self.settings.min_free_mb * 1e6

    def has_room(self, needed_bytes: int) -> bool:
        """Enough space to write ``needed_bytes`` while staying within the limits."""
        return not self.over_limit(needed_bytes)

    def expire(self, now: float | None = None) -> int:
        """Delete footage past its age limit; returns how many segments went."""
        now = time.time() if now is None else now
        cont_before = now - self.settings.continuous_days * 86400
        event_before = now - self.settings.event_days * 86400
        removed = 0
        with self._lock:
            while True:
                batch = store.expired(self.index.db, cont_before, event_before)
                if not batch:
                    break
                for seg in batch:
                    self._evict(seg, "age")
                    removed += 1
            store.delete_gaps_before(self.index.db, min(cont_before, event_before))
        return removed

    def make_room(self, extra_bytes: int = 0) -> int:
        """Evict the oldest unlocked segments until the disk is within its limits."""
        removed = 0
        with self._lock:
            for reclaim in self._reclaimers:
                if not self.over_limit(extra_bytes):
                    break
                try:
                    reclaim()
                except OSError as err:
                    log.warning("could not reclaim space: %s", err)
            while self.over_limit(extra_bytes):
                batch = store.evictable(self.index.db, limit=20)
                if not batch:
                    log.warning(
                        "recordings disk over its limits and nothing left to evict"
                        " (everything is locked or being written)"
                    )
                    break
                for seg in batch:
                    self._evict(seg, "disk")
                    removed += 1
                    if not self.over_limit(extra_bytes):
                        break
        return removed

    def _evict(self, seg: dict, why: str) -> None:
        freed = self.index.delete(seg)
        self.evicted += 1
        self.evicted_bytes += freed
        log.info(
            "camera %s: evicted segment %s (%s, %d bytes)", seg["camera"], seg["path"], why, freed
        )

    def retry_deletes(self) -> int:
        """Delete again the files that could not be removed before; returns how many went."""
        removed = 0
        with self._lock:
            for seg in store.deleting(self.index.db):
                freed = self.index.delete(seg)
                if self.index.get(seg["id"]) is None:
                    removed += 1
                    self.evicted_bytes += freed
        return removed

    def run_once(self) -> None:
        """One pass (earlier failed deletes, age, then disk); errors are logged, never raised."""
        try:
            self.retry_deletes()
            self.expire()
            self.make_room()
        except (OSError, sqlite3.Error) as err:
            log.warning("retention pass failed: %s", err)
