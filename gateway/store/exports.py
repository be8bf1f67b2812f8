"""Evidence exports (录像导出): one row per job, its state and results as a JSON body."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE exports (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        created REAL NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX exports_created ON exports(created)
    """,
    # Locks of deleted exports that a child could not release yet (it was offline).
    """
    CREATE TABLE export_unlocks (
        owner TEXT NOT NULL,
        path TEXT NOT NULL,
        since REAL NOT NULL,
        PRIMARY KEY (owner, path)
    )
    """,
]


def init(db: Database) -> None:
    db.migrate("exports", MIGRATIONS)


def save(db: Database, job: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO exports(id, user, created, state, body) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET state = excluded.state, body = excluded.body",
        (job["id"], job["user"], job["created"], job["state"], json.dumps(job, ensure_ascii=False)),
    )


def get(db: Database, export_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT body FROM exports WHERE id = ?", (export_id,))
    return json.loads(row["body"]) if row else None


def all_jobs(db: Database) -> list[dict[str, Any]]:
    """Every job, newest first."""
    return [
        json.loads(r["body"]) for r in db.query("SELECT body FROM exports ORDER BY created DESC")
    ]


def delete(db: Database, export_id: str) -> bool:
    return db.execute("DELETE FROM exports WHERE id = ?", (export_id,)) > 0


def add_unlock(db: Database, owner: str, path: str, since: float) -> None:
    db.execute(
        "INSERT OR IGNORE INTO export_unlocks(owner, path, since) VALUES (?, ?, ?)",
        (owner, path, since),
    )


def pending_unlocks(db: Database) -> list[tuple[str, str]]:
    return [(r["owner"], r["path"]) for r in db.query("SELECT owner, path FROM export_unlocks")]


def done_unlock(db: Database, owner: str, path: str) -> None:
    db.execute("DELETE FROM export_unlocks WHERE owner = ? AND path = ?", (owner, path))
