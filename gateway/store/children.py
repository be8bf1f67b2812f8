"""Child gateways known to this parent: hashed tokens, delivery marks, last catalog.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to store them (no
password stretching needed); only the hash is kept, the token is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE cascade_children (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created REAL NOT NULL,
        revoked REAL,
        last_seen REAL,
        outbox_epoch TEXT NOT NULL DEFAULT '',
        last_seq INTEGER NOT NULL DEFAULT 0,
        catalog TEXT
    )
    """,
]
TOKEN_PREFIX = "gwc_"


@dataclass(frozen=True)
class Child:
    """One child gateway as the parent knows it (never its token)."""

    name: str
    created: float
    revoked: float | None
    last_seen: float | None
    outbox_epoch: str
    last_seq: int
    catalog: str | None


class ChildExists(Exception):
    """A live (not revoked) child of that name exists already."""


def init(db: Database) -> None:
    db.migrate("cascade_children", MIGRATIONS)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _row(r) -> Child:
    return Child(
        r["name"],
        r["created"],
        r["revoked"],
        r["last_seen"],
        r["outbox_epoch"],
        r["last_seq"],
        r["catalog"],
    )


def add(db: Database, name: str) -> str:
    """Issue a token for ``name`` (a new child, or one whose token was revoked)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT revoked FROM cascade_children WHERE name = ?", (name,)
        ).fetchone()
        if row is not None and row["revoked"] is None:
            raise ChildExists(name)
        conn.execute(
            "INSERT INTO cascade_children(name, token_hash, created) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash,"
            " created = excluded.created, revoked = NULL",
            (name, _hash(token), time.time()),
        )
    return token


def verify(db: Database, token: str) -> str | None:
    """The child name a (not revoked) token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = _hash(token)
    row = db.query_one(
        "SELECT name, token_hash FROM cascade_children WHERE token_hash = ? AND revoked IS NULL",
        (digest,),
    )
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return row["name"]


def is_active(db: Database, name: str) -> bool:
    row = db.query_one("SELECT 1 FROM cascade_children WHERE name = ? AND revoked IS NULL", (name,))
    return row is not None


def revoke(db: Database, name: str) -> bool:
    """Revoke the token of ``name``; False if there was no live one."""
    # Database.execute returns the connection's last insert id when it has one, so the
    # row count comes from the cursor here.
    with db.transaction() as conn:
        cur = conn.execute(
            "UPDATE cascade_children SET revoked = ? WHERE name = ? AND revoked IS NULL",
            (time.time(), name),
        )
        return cur.rowcount > 0


def get(db: Database, name: str) -> Child | None:
    row = db.query_one("SELECT * FROM cascade_children WHERE name = ?", (name,))
    return _row(row) if row else None


def list_all(db: Database) -> list[Child]:
    return [_row(r) for r in db.query("SELECT * FROM cascade_children ORDER BY name")]


def mark_delivered(db: Database, name: str, epoch: str, seq: int) -> None:
    db.execute(
        "UPDATE cascade_children SET outbox_epoch = ?, last_seq = ?, last_seen = ? WHERE name = ?",
        (epoch, seq, time.time(), name),
    )


def save_catalog(db: Database, name: str, catalog_json: str) -> None:
    db.execute(
        "UPDATE cascade_children SET catalog = ?, last_seen = ? WHERE name = ?",
        (catalog_json, time.time(), name),
    )
