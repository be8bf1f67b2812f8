"""Tours (轮巡): shared ones (owner '') and personal ones, kept as JSON bodies."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE tours (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        created_by TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL,
        UNIQUE (owner, name)
    )
    """,
]


class TourExists(Exception):
    """Another tour of the same owner has this name."""


def init(db: Database) -> None:
    db.migrate("tours", MIGRATIONS)


def _row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        **json.loads(row["body"]),
        "shared": row["owner"] == "",
        "owner": row["owner"] or None,
        "created_by": row["created_by"],
        "updated": row["updated"],
    }


def add(db: Database, owner: str, name: str, body: dict[str, Any], user: str) -> int:
    try:
        return db.execute(
            "INSERT INTO tours(owner, name, body, created_by, updated) VALUES (?, ?, ?, ?, ?)",
            (owner, name, json.dumps(body, ensure_ascii=False), user, time.time()),
        )
    except sqlite3.IntegrityError:
        raise TourExists(name) from None


def update(db: Database, tour_id: int, owner: str, name: str, body: dict[str, Any]) -> None:
    try:
        db.execute(
            "UPDATE tours SET owner = ?, name = ?, body = ?, updated = ? WHERE id = ?",
            (owner, name, json.dumps(body, ensure_ascii=False), time.time(), tour_id),
        )
    except sqlite3.IntegrityError:
        raise TourExists(name) from None


def delete(db: Database, tour_id: int) -> bool:
    return db.execute("DELETE FROM tours WHERE id = ?", (tour_id,)) > 0


def get(db: Database, tour_id: int) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM tours WHERE id = ?", (tour_id,))
    return _row(row) if row else None


def visible_to(db: Database, user: str) -> list[dict[str, Any]]:
    """Shared tours and the user's own, shared first, by name."""
    rows = db.query(
        "SELECT * FROM tours WHERE owner = '' OR owner = ? ORDER BY owner != '', name", (user,)
    )
    return [_row(r) for r in rows]
