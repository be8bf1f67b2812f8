"""GB/T 28181 channel ids: one stable 20-digit id per camera or tree node, never reused.

The serial (last 6 digits) comes from an AUTOINCREMENT counter, so an id given out once
is never handed to another camera, even after its row is deleted.
"""

from __future__ import annotations

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE gb28181_ids (
        serial INTEGER PRIMARY KEY AUTOINCREMENT,
        prefix TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        gb_id TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (prefix, key)
    )
    """,
]
MAX_SERIAL = 999_999


class IdsExhausted(Exception):
    """All 999,999 serials of the id space are used."""


def init(db: Database) -> None:
    db.migrate("gb28181", MIGRATIONS)


def gb_id(db: Database, prefix: str, key: str, type_code: str) -> str:
    """The id of ``key`` under the 8-digit ``prefix``: found, or allocated now.

    ``type_code`` is the 3-digit type (132 network camera, 215, 216); industry and
    network digits are 00 and 0 as platforms expect for public-security video.
    """
    row = db.query_one("SELECT gb_id FROM gb28181_ids WHERE prefix = ? AND key = ?", (prefix, key))
    if row is not None:
        return str(row["gb_id"])
    with db.transaction() as conn:
        again = conn.execute(
            "SELECT gb_id FROM gb28181_ids WHERE prefix = ? AND key = ?", (prefix, key)
        ).fetchone()
        if again is not None:
            return str(again["gb_id"])
        # Reserve the serial first, then write the id built from it.
        cur = conn.execute(
            "INSERT INTO gb28181_ids(prefix, key, kind, gb_id) VALUES (?, ?, ?, ?)",
            (prefix, key, type_code, f"pending:{prefix}:{key}"),
        )
        serial = int(cur.lastrowid or 0)
        if serial > MAX_SERIAL:
            raise IdsExhausted(f"no GB/T 28181 serial left under {prefix}")
        value = f"{prefix}00{type_code}0{serial:06d}"
        conn.execute("UPDATE gb28181_ids SET gb_id = ? WHERE serial = ?", (value, serial))
        return value


def all_ids(db: Database, prefix: str) -> dict[str, str]:
    """key → id of everything allocated under ``prefix``."""
    rows = db.query("SELECT key, gb_id FROM gb28181_ids WHERE prefix = ?", (prefix,))
    return {str(r["key"]): str(r["gb_id"]) for r in rows}
