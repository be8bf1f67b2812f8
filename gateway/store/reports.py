"""Inspection reports (巡检报告): one JSON report per node and day, kept ``keep_days``."""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE inspection_reports (
        node TEXT NOT NULL,
        day TEXT NOT NULL,
        created REAL NOT NULL,
        final INTEGER NOT NULL DEFAULT 0,
        body TEXT NOT NULL,
        PRIMARY KEY (node, day)
    );
    CREATE INDEX inspection_reports_day ON inspection_reports(day)
    """,
    # the fresh snapshot an on-demand inspection took of each camera (the latest only)
    """
    CREATE TABLE inspection_snapshots (
        camera TEXT PRIMARY KEY,
        taken REAL NOT NULL,
        jpeg BLOB NOT NULL
    )
    """,
    # on-demand inspections kept for a child that was offline, sent when it connects
    """
    CREATE TABLE inspection_pending (
        id INTEGER PRIMARY KEY,
        child TEXT NOT NULL,
        path TEXT NOT NULL,
        params TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX inspection_pending_child ON inspection_pending(child)
    """,
]


def init(db: Database) -> None:
    db.migrate("inspection_reports", MIGRATIONS)


def put(db: Database, node: str, day: str, report: dict[str, Any], final: bool) -> None:
    """Store (or replace) the report of ``node`` for ``day`` (YYYY-MM-DD, local)."""
    db.execute(
        "INSERT INTO inspection_reports(node, day, created, final, body) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(node, day) DO UPDATE SET created=excluded.created,"
        " final=excluded.final, body=excluded.body",
        (node, day, time.time(), int(final), json.dumps(report, ensure_ascii=False)),
    )


def get(db: Database, node: str, day: str | None = None) -> dict[str, Any] | None:
    """The report of ``node`` for ``day``, or its latest one."""
    if day is None:
        row = db.query_one(
            "SELECT body FROM inspection_reports WHERE node = ? ORDER BY day DESC LIMIT 1",
            (node,),
        )
    else:
        row = db.query_one(
            "SELECT body FROM inspection_reports WHERE node = ? AND day = ?", (node, day)
        )
    return json.loads(row["body"]) if row else None


def days(db: Database, node: str, limit: int = 400) -> list[str]:
    rows = db.query(
        "SELECT day FROM inspection_reports WHERE node = ? ORDER BY day DESC LIMIT ?",
        (node, limit),
    )
    return [r["day"] for r in rows]


def delete_before(db: Database, day: str) -> int:
    return db.execute("DELETE FROM inspection_reports WHERE day < ?", (day,))


def for_day(db: Database, day: str) -> list[dict[str, Any]]:
    """Every node's report of ``day`` (this gateway's and those its children sent up)."""
    rows = db.query("SELECT node, body FROM inspection_reports WHERE day = ? ORDER BY node", (day,))
    return [{**json.loads(r["body"]), "node": r["node"]} for r in rows]


def latest_day(db: Database, prefix: str | None = None) -> str | None:
    """The newest day with any report (of nodes under ``prefix/``, or of any node)."""
    if prefix is None:
        row = db.query_one("SELECT MAX(day) AS d FROM inspection_reports")
    else:
        row = db.query_one(
            "SELECT MAX(day) AS d FROM inspection_reports WHERE substr(node, 1, ?) = ?",
            (len(prefix) + 1, prefix + "/"),
        )
    return row["d"] if row and row["d"] else None


def days_with_below(db: Database, node: str, below: str | None, limit: int = 400) -> list[str]:
    """Days with a report of ``node`` or of a node under ``below/`` (None: any node)."""
    if below is None:
        rows = db.query(
            "SELECT DISTINCT day FROM inspection_reports ORDER BY day DESC LIMIT ?", (limit,)
        )
    else:
        rows = db.query(
            "SELECT DISTINCT day FROM inspection_reports WHERE node = ? OR substr(node, 1, ?) = ?"
            " ORDER BY day DESC LIMIT ?",
            (node, len(below) + 1, below + "/", limit),
        )
    return [r["day"] for r in rows]


def put_snapshot(db: Database, camera: str, taken: float, jpeg: bytes) -> None:
    """Keep ``jpeg`` as the camera's inspection snapshot (replacing the previous one)."""
    db.execute(
        "INSERT INTO inspection_snapshots(camera, taken, jpeg) VALUES (?, ?, ?)"
        " ON CONFLICT(camera) DO UPDATE SET taken=excluded.taken, jpeg=excluded.jpeg",
        (camera, taken, jpeg),
    )


def get_snapshot(db: Database, camera: str) -> tuple[float, bytes] | None:
    row = db.query_one("SELECT taken, jpeg FROM inspection_snapshots WHERE camera = ?", (camera,))
    return (row["taken"], bytes(row["jpeg"])) if row else None


def snapshot_times(db: Database) -> dict[str, float]:
    """When each camera's inspection snapshot was taken."""
    rows = db.query("SELECT camera, taken FROM inspection_snapshots")
    return {r["camera"]: r["taken"] for r in rows}


def pending_add(db: Database, child: str, path: str, params: dict[str, Any], keep: int) -> None:
    """Keep a request for ``child`` (its ``keep`` newest only)."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO inspection_pending(child, path, params, created) VALUES (?, ?, ?, ?)",
            (child, path, json.dumps(params), time.time()),
        )
        conn.execute(
            "DELETE FROM inspection_pending WHERE child = ? AND id NOT IN"
            " (SELECT id FROM inspection_pending WHERE child = ? ORDER BY id DESC LIMIT ?)",
            (child, child, keep),
        )


def pending_all(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    """Every kept request, oldest first: (child, path, params)."""
    rows = db.query("SELECT child, path, params FROM inspection_pending ORDER BY id")
    return [(r["child"], r["path"], json.loads(r["params"])) for r in rows]


def pending_clear(db: Database, child: str) -> None:
    db.execute("DELETE FROM inspection_pending WHERE child = ?", (child,))
