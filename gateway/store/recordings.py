"""Recording index: segments, explicit gaps and protection locks (SQLite).

Times are Unix seconds (REAL, UTC); paths are relative to the recordings directory,
so the directory can move. A segment's ``status`` is ``open`` while it is being
written, ``closed`` when finished, ``recovered`` when recovery indexed it after a
crash and ``deleting`` when its file could not be removed yet (retention retries).
``kind`` is ``continuous`` or ``event``; ``has_event`` marks footage around an event
(kept for ``retention.event_days``); ``locked`` footage is never evicted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE rec_segments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        camera TEXT NOT NULL,
        stream TEXT NOT NULL DEFAULT 'main',
        start REAL NOT NULL,
        "end" REAL NOT NULL,
        duration REAL NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        path TEXT NOT NULL UNIQUE,
        codec TEXT NOT NULL DEFAULT '',
        width INTEGER NOT NULL DEFAULT 0,
        height INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL DEFAULT 'continuous',
        has_event INTEGER NOT NULL DEFAULT 0,
        locked INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'open'
    );
    CREATE INDEX rec_segments_camera_start ON rec_segments(camera, start);
    CREATE INDEX rec_segments_start ON rec_segments(start);
    CREATE TABLE rec_gaps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        camera TEXT NOT NULL,
        start REAL NOT NULL,
        "end" REAL NOT NULL,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX rec_gaps_camera_start ON rec_gaps(camera, start);
    CREATE TABLE rec_locks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        camera TEXT NOT NULL,
        start REAL NOT NULL,
        "end" REAL NOT NULL,
        event_id TEXT
    );
    CREATE INDEX rec_locks_camera ON rec_locks(camera, start)
    """,
]

SEGMENT_COLUMNS = (
    "camera",
    "stream",
    "start",
    "end",
    "duration",
    "bytes",
    "path",
    "codec",
    "width",
    "height",
    "kind",
    "has_event",
    "locked",
    "status",
)


def init(db: Database) -> None:
    db.migrate("recordings", MIGRATIONS)


def _dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None


def insert_segment(db: Database, **fields: Any) -> int:
    cols = [c for c in SEGMENT_COLUMNS if c in fields]
    sql = "INSERT INTO rec_segments({}) VALUES ({})".format(
        ", ".join(f'"{c}"' for c in cols), ", ".join("?" for _ in cols)
    )
    return db.execute(sql, [fields[c] for c in cols])


def update_segment(db: Database, segment_id: int, **fields: Any) -> None:
    cols = [c for c in SEGMENT_COLUMNS if c in fields]
    if not cols:
        return
    sql = "UPDATE rec_segments SET {} WHERE id = ?".format(", ".join(f'"{c}" = ?' for c in cols))
    db.execute(sql, [*(fields[c] for c in cols), segment_id])


def get_segment(db: Database, segment_id: int) -> dict[str, Any] | None:
    return _dict(db.query_one("SELECT * FROM rec_segments WHERE id = ?", (segment_id,)))


def segments(
    db: Database, camera: str, start: float, end: float, limit: int = 100_000
) -> list[dict[str, Any]]:
    """Segments of ``camera`` overlapping [start, end], oldest first (none being deleted)."""
    rows = db.query(
        'SELECT * FROM rec_segments WHERE camera = ? AND "end" > ? AND start < ?'
        " AND status != 'deleting' ORDER BY start LIMIT ?",
        (camera, start, end, limit),
    )
    return [dict(r) for r in rows]


def segments_by_status(db: Database, status: str) -> list[dict[str, Any]]:
    return [dict(r) for r in db.query("SELECT * FROM rec_segments WHERE status = ?", (status,))]


def deleting(db: Database, limit: int = 500) -> list[dict[str, Any]]:
    """Segments whose file could not be removed yet, oldest first."""
    rows = db.query(
        "SELECT * FROM rec_segments WHERE status = 'deleting' ORDER BY start LIMIT ?", (limit,)
    )
    return [dict(r) for r in rows]


def all_paths(db: Database) -> set[str]:
    return {r["path"] for r in db.query("SELECT path FROM rec_segments")}


def last_end(db: Database, camera: str) -> float | None:
    row = db.query_one('SELECT MAX("end") AS e FROM rec_segments WHERE camera = ?', (camera,))
    return row["e"] if row and row["e"] is not None else None


def delete_segment(db: Database, segment_id: int) -> None:
    db.execute("DELETE FROM rec_segments WHERE id = ?", (segment_id,))


def evictable(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """The oldest finished, unlocked segments (all cameras), oldest first."""
    rows = db.query(
        "SELECT * FROM rec_segments WHERE locked = 0 AND status IN ('closed', 'recovered')"
        " ORDER BY start LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


def expired(
    db: Database, continuous_before: float, event_before: float, limit: int = 500
) -> list[dict[str, Any]]:
    """Unlocked finished segments older than their retention."""
    rows = db.query(
        "SELECT * FROM rec_segments WHERE locked = 0 AND status IN ('closed', 'recovered') AND ("
        ' (has_event = 0 AND "end" < ?) OR (has_event = 1 AND "end" < ?))'
        " ORDER BY start LIMIT ?",
        (continuous_before, event_before, limit),
    )
    return [dict(r) for r in rows]


def mark_event(db: Database, camera: str, start: float, end: float) -> int:
    """Flag the camera's segments overlapping [start, end] as event footage."""
    return db.execute(
        'UPDATE rec_segments SET has_event = 1 WHERE camera = ? AND "end" > ? AND start < ?',
        (camera, start, end),
    )


def set_locked(db: Database, segment_ids: Iterable[int], locked: bool) -> int:
    ids = [int(i) for i in segment_ids]
    if not ids:
        return 0
    marks = ", ".join("?" for _ in ids)
    return db.execute(
        f"UPDATE rec_segments SET locked = ? WHERE id IN ({marks})", [int(locked), *ids]
    )


def add_lock(db: Database, camera: str, start: float, end: float, event_id: str | None) -> None:
    """Protect a time range (present and future segments in it), then lock what exists."""
    with db.transaction() as conn:
        conn.execute(
            'INSERT INTO rec_locks(camera, start, "end", event_id) VALUES (?, ?, ?, ?)',
            (camera, start, end, event_id),
        )
        conn.execute(
            'UPDATE rec_segments SET locked = 1 WHERE camera = ? AND "end" > ? AND start < ?',
            (camera, start, end),
        )


def remove_event_locks(db: Database, event_id: str) -> list[int]:
    """Drop an event's locks; unlock its segments no other lock covers. Returns their ids."""
    with db.transaction() as conn:
        locks = conn.execute(
            'SELECT camera, start, "end" FROM rec_locks WHERE event_id = ?', (event_id,)
        ).fetchall()
        conn.execute("DELETE FROM rec_locks WHERE event_id = ?", (event_id,))
        unlocked: list[int] = []
        for lock in locks:
            rows = conn.execute(
                'SELECT id, camera, start, "end" FROM rec_segments'
                ' WHERE camera = ? AND "end" > ? AND start < ? AND locked = 1',
                (lock["camera"], lock["start"], lock["end"]),
            ).fetchall()
            for seg in rows:
                other = conn.execute(
                    'SELECT 1 FROM rec_locks WHERE camera = ? AND "end" > ? AND start < ?',
                    (seg["camera"], seg["start"], seg["end"]),
                ).fetchone()
                if other is None:
                    conn.execute("UPDATE rec_segments SET locked = 0 WHERE id = ?", (seg["id"],))
                    unlocked.append(seg["id"])
        return unlocked


def is_locked_range(db: Database, camera: str, start: float, end: float) -> bool:
    row = db.query_one(
        'SELECT 1 FROM rec_locks WHERE camera = ? AND "end" > ? AND start < ?',
        (camera, start, end),
    )
    return row is not None


def insert_gap(db: Database, camera: str, start: float, end: float, reason: str) -> int:
    return db.execute(
        'INSERT INTO rec_gaps(camera, start, "end", reason) VALUES (?, ?, ?, ?)',
        (camera, start, end, reason),
    )


def update_gap_end(db: Database, gap_id: int, end: float) -> None:
    db.execute('UPDATE rec_gaps SET "end" = ? WHERE id = ? AND start < ?', (end, gap_id, end))


def gaps(db: Database, camera: str, start: float, end: float) -> list[dict[str, Any]]:
    rows = db.query(
        'SELECT * FROM rec_gaps WHERE camera = ? AND "end" > ? AND start < ? ORDER BY start',
        (camera, start, end),
    )
    return [dict(r) for r in rows]


def delete_gaps_before(db: Database, before: float) -> int:
    return db.execute('DELETE FROM rec_gaps WHERE "end" < ?', (before,))


def usage(db: Database) -> dict[str, Any]:
    row = db.query_one(
        "SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b, MIN(start) AS first FROM rec_segments"
    )
    return dict(row) if row else {"n": 0, "b": 0, "first": None}
