"""Cameras table: one row per camera, the record as JSON plus the columns we look up by.

Never holds a password: credentials live in ``data_dir/secrets.json``
(:mod:`gateway.cameras.secrets`).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE cameras (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'api',
        endpoint TEXT,
        onvif_host TEXT,
        onvif_port INTEGER,
        rtsp_url TEXT,
        status TEXT NOT NULL DEFAULT 'offline',
        last_seen TEXT,
        body TEXT NOT NULL,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX cameras_endpoint ON cameras(endpoint);
    CREATE INDEX cameras_onvif ON cameras(onvif_host, onvif_port)
    """,
]


def init(db: Database) -> None:
    db.migrate("cameras", MIGRATIONS)


def upsert(db: Database, record: dict[str, Any]) -> None:
    """Insert or replace a camera record (a JSON-able dict with at least ``id``)."""
    onvif = record.get("onvif") or {}
    db.execute(
        "INSERT INTO cameras(id, name, source, endpoint, onvif_host, onvif_port, rtsp_url,"
        " status, last_seen, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(id) DO UPDATE SET name=excluded.name, source=excluded.source,"
        " endpoint=excluded.endpoint, onvif_host=excluded.onvif_host,"
        " onvif_port=excluded.onvif_port, rtsp_url=excluded.rtsp_url, status=excluded.status,"
        " last_seen=excluded.last_seen, body=excluded.body",
        (
            record["id"],
            record.get("name", ""),
            record.get("source", "api"),
            record.get("endpoint"),
            onvif.get("host"),
            onvif.get("port"),
            record.get("rtsp_url"),
            record.get("status", "offline"),
            record.get("last_seen"),
            json.dumps(record, ensure_ascii=False),
        ),
    )


def load_all(db: Database) -> list[dict[str, Any]]:
    """Every stored camera record, oldest first."""
    rows = db.query("SELECT body FROM cameras ORDER BY created, id")
    out = []
    for row in rows:
        try:
            out.append(json.loads(row["body"]))
        except ValueError:
            continue
    return out


def delete(db: Database, camera_id: str) -> bool:
    return db.execute("DELETE FROM cameras WHERE id = ?", (camera_id,)) > 0
