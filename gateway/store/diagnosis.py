"""Diagnosis reference pictures (per camera and day/night mode), kept across restarts."""

from __future__ import annotations

import json
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE diagnosis_references (
        camera TEXT NOT NULL,
        mode TEXT NOT NULL,
        created REAL NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (camera, mode)
    )
    """,
]


def init(db: Database) -> None:
    db.migrate("diagnosis_references", MIGRATIONS)


def put(db: Database, camera: str, mode: str, created: float, body: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO diagnosis_references(camera, mode, created, body) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(camera, mode) DO UPDATE SET created=excluded.created, body=excluded.body",
        (camera, mode, created, json.dumps(body)),
    )


def load(db: Database, camera: str) -> dict[str, dict[str, Any]]:
    rows = db.query("SELECT mode, body FROM diagnosis_references WHERE camera = ?", (camera,))
    out = {}
    for row in rows:
        try:
            out[row["mode"]] = json.loads(row["body"])
        except ValueError:
            continue
    return out


def delete(db: Database, camera: str) -> int:
    return db.execute("DELETE FROM diagnosis_references WHERE camera = ?", (camera,))
