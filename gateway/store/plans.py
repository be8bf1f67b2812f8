"""Plans (预案): named sets of actions kept as JSON bodies, one row each."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE plans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_by TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        updated REAL NOT NULL
    )
    """,
]


class PlanExists(Exception):
    """Another plan has this name."""


def init(db: Database) -> None:
    db.migrate("plans", MIGRATIONS)


def _row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        **json.loads(row["body"]),
        "created_by": row["created_by"],
        "created": row["created"],
        "updated": row["updated"],
    }


def add(db: Database, name: str, body: dict[str, Any], user: str) -> int:
    now = time.time()
    try:
        return db.execute(
            "INSERT INTO plans(name, body, created_by, created, updated) VALUES (?, ?, ?, ?, ?)",
            (name, json.dumps(body, ensure_ascii=False), user, now, now),
        )
    except sqlite3.IntegrityError:
        raise PlanExists(name) from None


def update(db: Database, plan_id: int, name: str, body: dict[str, Any]) -> bool:
    try:
        return (
            db.execute(
                "UPDATE plans SET name = ?, body = ?, updated = ? WHERE id = ?",
                (name, json.dumps(body, ensure_ascii=False), time.time(), plan_id),
            )
            > 0
        )
    except sqlite3.IntegrityError:
        raise PlanExists(name) from None


def delete(db: Database, plan_id: int) -> bool:
    return db.execute("DELETE FROM plans WHERE id = ?", (plan_id,)) > 0


def get(db: Database, plan_id: int) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM plans WHERE id = ?", (plan_id,))
    return _row(row) if row else None


def by_name(db: Database, name: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM plans WHERE name = ?", (name,))
    return _row(row) if row else None


def list_all(db: Database) -> list[dict[str, Any]]:
    return [_row(r) for r in db.query("SELECT * FROM plans ORDER BY name")]
