"""Events table: stored, filtered, acknowledged."""

from __future__ import annotations

import json
from datetime import datetime

from gateway.store.db import Database
from gateway.store.event import Event

MIGRATIONS = [
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        camera TEXT NOT NULL,
        type TEXT NOT NULL,
        start TEXT NOT NULL,
        "end" TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX events_camera_start ON events(camera, start);
    CREATE INDEX events_start ON events(start);
    CREATE TABLE event_snapshots (
        id TEXT PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL
    )
    """,
]


def init(db: Database) -> None:
    db.migrate("events", MIGRATIONS)


def _iso(ts: datetime) -> str:
    return ts.isoformat()


def upsert(db: Database, event: Event) -> None:
    db.execute(
        'INSERT INTO events(id, camera, type, start, "end", body) VALUES (?, ?, ?, ?, ?, ?)'
        " ON CONFLICT(id) DO UPDATE SET camera=excluded.camera, type=excluded.type,"
        ' start=excluded.start, "end"=excluded."end", body=excluded.body',
        (
            event.id,
            event.camera,
            event.type,
            _iso(event.start),
            _iso(event.end) if event.end else None,
            event.model_dump_json(),
        ),
    )


def get(db: Database, event_id: str) -> Event | None:
    row = db.query_one("SELECT body FROM events WHERE id = ?", (event_id,))
    return Event.model_validate_json(row["body"]) if row else None


def query(
    db: Database,
    *,
    camera: str | None = None,
    camera_prefix: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[Event]:
    """Events newest first. ``camera_prefix`` matches a subtree (``village-3/``)."""
    where: list[str] = []
    params: list[str | int] = []
    if camera:
        where.append("camera = ?")
        params.append(camera)
    if camera_prefix:
        where.append("substr(camera, 1, ?) = ?")
        params += [len(camera_prefix), camera_prefix]
    if type:
        where.append("type = ?")
        params.append(type)
    if since:
        where.append('COALESCE("end", start) >= ?')
        params.append(_iso(since))
    if until:
        where.append("start <= ?")
        params.append(_iso(until))
    sql = "SELECT body FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start DESC LIMIT ?"
    params.append(limit)
    return [Event.model_validate_json(r["body"]) for r in db.query(sql, params)]


def set_acknowledged(db: Database, event_id: str, user: str) -> Event | None:
    event = get(db, event_id)
    if event is None:
        return None
    event.acknowledged = True
    event.data = {**event.data, "acknowledged_by": user}
    upsert(db, event)
    return event


def put_snapshot(db: Database, event_id: str, jpeg: bytes) -> None:
    db.execute(
        "INSERT INTO event_snapshots(id, jpeg) VALUES (?, ?)"
        " ON CONFLICT(id) DO UPDATE SET jpeg=excluded.jpeg",
        (event_id, jpeg),
    )


def get_snapshot(db: Database, event_id: str) -> bytes | None:
    row = db.query_one("SELECT jpeg FROM event_snapshots WHERE id = ?", (event_id,))
    return bytes(row["jpeg"]) if row else None


def dumps(event: Event) -> str:
    return json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
