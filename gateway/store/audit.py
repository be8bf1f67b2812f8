"""The audit log (操作日志): an append-only table of who did what, when, to which camera.

Rows are never updated: a trigger refuses any ``UPDATE``, and refuses a ``DELETE`` of
a row younger than one day, so only retention can remove rows, and only old ones.
Each row also carries ``hash = SHA-256(previous hash | row)``, so a row edited or
removed in the middle of the table (outside SQLite's triggers, with a file editor)
breaks the chain and :func:`verify` finds where.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gateway.store.db import Database

MIN_AGE_TO_DELETE_S = 86400

MIGRATIONS = [
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        camera TEXT NOT NULL DEFAULT '',
        client TEXT NOT NULL DEFAULT '',
        ok INTEGER NOT NULL DEFAULT 1,
        detail TEXT NOT NULL DEFAULT '{}',
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_ts ON audit(ts);
    CREATE INDEX audit_user_ts ON audit(user, ts);
    CREATE INDEX audit_camera_ts ON audit(camera, ts)
    """,
]


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    ts: float
    user: str
    action: str
    camera: str = ""
    client: str = ""
    ok: bool = True
    detail: dict[str, Any] = field(default_factory=dict)
    id: int = 0
    hash: str = ""

    def canonical(self) -> str:
        """The bytes the hash covers (everything but ``id`` and ``hash``)."""
        return json.dumps(
            [round(self.ts, 6), self.user, self.action, self.camera, self.client, self.ok,
             self.detail],
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )  # fmt: skip


# Triggers hold semicolons, which the migration splitter cuts on: created one by one.
TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_early_delete BEFORE DELETE ON audit"
    f" WHEN old.ts > CAST(strftime('%s', 'now') AS REAL) - {MIN_AGE_TO_DELETE_S}"
    " BEGIN SELECT RAISE(ABORT, 'audit entries younger than a day cannot be deleted'); END",
]


def init(db: Database) -> None:
    db.migrate("audit", MIGRATIONS)
    for trigger in TRIGGERS:
        db.execute(trigger)


def _chain(previous: str, entry: AuditEntry) -> str:
    return hashlib.sha256(f"{previous}|{entry.canonical()}".encode()).hexdigest()


def append(db: Database, entry: AuditEntry) -> int:
    """Add one entry after the last one; returns its id."""
    detail = json.dumps(entry.detail, ensure_ascii=False, sort_keys=True)
    with db.transaction() as conn:
        row = conn.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        digest = _chain(row["hash"] if row else "", entry)
        cur = conn.execute(
            "INSERT INTO audit(ts, user, action, camera, client, ok, detail, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                round(entry.ts, 6),
                entry.user,
                entry.action,
                entry.camera,
                entry.client,
                int(entry.ok),
                detail,
                digest,
            ),
        )
        return int(cur.lastrowid or 0)


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        ts=row["ts"],
        user=row["user"],
        action=row["action"],
        camera=row["camera"],
        client=row["client"],
        ok=bool(row["ok"]),
        detail=json.loads(row["detail"]),
        hash=row["hash"],
    )


@dataclass(frozen=True)
class AuditQuery:
    """Filters of a search; ``visible_*`` is the caller's reach, applied by the part."""

    user: str | None = None
    camera: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    only_user: str | None = None  # non-admins: their own entries only
    scope: str = ""  # scoped admins: entries in their subtree, plus their own
    scope_user: str = ""
    limit: int = 100
    offset: int = 0


def search(db: Database, q: AuditQuery) -> list[AuditEntry]:
    """Entries newest first."""
    where: list[str] = []
    params: list[Any] = []
    if q.user:
        where.append("user = ?")
        params.append(q.user)
    if q.camera:
        # A camera or a subtree: "village-1" matches village-1/cam-01 too.
        where.append("(camera = ? OR substr(camera, 1, ?) = ?)")
        params += [q.camera, len(q.camera) + 1, q.camera + "/"]
    if q.action:
        where.append("action = ?")
        params.append(q.action)
    if q.since is not None:
        where.append("ts >= ?")
        params.append(q.since)
    if q.until is not None:
        where.append("ts <= ?")
        params.append(q.until)
    if q.only_user is not None:
        where.append("user = ?")
        params.append(q.only_user)
    if q.scope:
        where.append("(user = ? OR camera = ? OR substr(camera, 1, ?) = ?)")
        params += [q.scope_user, q.scope, len(q.scope) + 1, q.scope + "/"]
    sql = "SELECT * FROM audit"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    params += [q.limit, q.offset]
    return [_entry(r) for r in db.query(sql, params)]


def purge_before(db: Database, ts: float) -> int:
    """Delete entries older than ``ts`` (retention); the trigger keeps the last day."""
    ts = min(ts, _now_minus_a_day(db))
    return db.execute("DELETE FROM audit WHERE ts < ?", (ts,))


def _now_minus_a_day(db: Database) -> float:
    row = db.query_one("SELECT CAST(strftime('%s', 'now') AS REAL) AS now")
    return float(row["now"]) - MIN_AGE_TO_DELETE_S - 60 if row else 0.0


def verify(db: Database) -> tuple[int, int | None]:
    """Check the hash chain: (entries checked, id of the first broken entry or None).

    The oldest remaining entry starts the chain (retention removes its predecessors).
    """
    checked = 0
    previous: str | None = None
    for row in db.query("SELECT * FROM audit ORDER BY id"):
        entry = _entry(row)
        if previous is not None and _chain(previous, entry) != entry.hash:
            return checked, entry.id
        previous = entry.hash
        checked += 1
    return checked, None
