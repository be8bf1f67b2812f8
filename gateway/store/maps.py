"""E-maps (电子地图): this gateway's map image and what is placed on it; camera coordinates.

One row per node of this gateway ('' is the gateway itself): the image's file name in
the data dir's ``maps/`` folder, its kind and size, and the pins and areas as JSON.
Coordinates of cameras (latitude/longitude) are kept apart: they belong to the camera,
not to a picture.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE maps (
        node TEXT PRIMARY KEY,
        file TEXT NOT NULL,
        kind TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '{"pins": [], "areas": []}',
        updated REAL NOT NULL,
        updated_by TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE camera_geo (
        camera TEXT PRIMARY KEY,
        latitude REAL NOT NULL,
        longitude REAL NOT NULL
    )
    """,
]


def init(db: Database) -> None:
    db.migrate("maps", MIGRATIONS)


def _row(row: sqlite3.Row) -> dict[str, Any]:
    body = json.loads(row["body"])
    return {
        "node": row["node"],
        "file": row["file"],
        "kind": row["kind"],
        "width": row["width"],
        "height": row["height"],
        "bytes": row["bytes"],
        "sha256": row["sha256"],
        "pins": body.get("pins", []),
        "areas": body.get("areas", []),
        "updated": row["updated"],
        "updated_by": row["updated_by"],
    }


def get(db: Database, node: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM maps WHERE node = ?", (node,))
    return _row(row) if row else None


def put_image(
    db: Database,
    node: str,
    file: str,
    kind: str,
    size: tuple[int, int],
    nbytes: int,
    sha: str,
    user: str,
) -> str | None:
    """Set the node's image (keeping its pins); returns the file it replaces, if any."""
    with db.transaction() as conn:
        old = conn.execute("SELECT file FROM maps WHERE node = ?", (node,)).fetchone()
        conn.execute(
            "INSERT INTO maps(node, file, kind, width, height, bytes, sha256, updated, updated_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node) DO UPDATE SET"
            " file = excluded.file, kind = excluded.kind, width = excluded.width,"
            " height = excluded.height, bytes = excluded.bytes, sha256 = excluded.sha256,"
            " updated = excluded.updated, updated_by = excluded.updated_by",
            (node, file, kind, size[0], size[1], nbytes, sha, time.time(), user),
        )
    return old["file"] if old and old["file"] != file else None


def put_body(db: Database, node: str, body: dict[str, Any], user: str) -> bool:
    """Replace the pins and areas of a node that has a map; False if it has none."""
    return (
        db.execute(
            "UPDATE maps SET body = ?, updated = ?, updated_by = ? WHERE node = ?",
            (json.dumps(body, ensure_ascii=False), time.time(), user, node),
        )
        > 0
    )


def delete(db: Database, node: str) -> str | None:
    """Remove the node's map; returns its image file, or None if there was none."""
    with db.transaction() as conn:
        row = conn.execute("SELECT file FROM maps WHERE node = ?", (node,)).fetchone()
        conn.execute("DELETE FROM maps WHERE node = ?", (node,))
    return row["file"] if row else None


def files(db: Database) -> set[str]:
    return {r["file"] for r in db.query("SELECT file FROM maps")}


def geo_all(db: Database) -> dict[str, tuple[float, float]]:
    rows = db.query("SELECT camera, latitude, longitude FROM camera_geo")
    return {r["camera"]: (r["latitude"], r["longitude"]) for r in rows}


def geo_one(db: Database, camera: str) -> tuple[float, float] | None:
    row = db.query_one("SELECT latitude, longitude FROM camera_geo WHERE camera = ?", (camera,))
    return (row["latitude"], row["longitude"]) if row else None


def geo_set(db: Database, camera: str, lat_lon: tuple[float, float] | None) -> None:
    if lat_lon is None:
        db.execute("DELETE FROM camera_geo WHERE camera = ?", (camera,))
        return
    db.execute(
        "INSERT INTO camera_geo(camera, latitude, longitude) VALUES (?, ?, ?)"
        " ON CONFLICT(camera) DO UPDATE SET latitude = excluded.latitude,"
        " longitude = excluded.longitude",
        (camera, lat_lon[0], lat_lon[1]),
    )
