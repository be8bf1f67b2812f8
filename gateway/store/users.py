"""Users and their tokens (sessions and API tokens, stored as SHA-256 hashes)."""

from __future__ import annotations

import sqlite3
import time

from gateway.store.db import Database

MIGRATIONS = [
    """
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        scope TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        token_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        expires REAL
    );
    CREATE INDEX tokens_username ON tokens(username)
    """,
    """
    CREATE TABLE ui_prefs (
        username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (username, name)
    )
    """,
]


def init(db: Database) -> None:
    db.migrate("users", MIGRATIONS)


def count(db: Database) -> int:
    row = db.query_one("SELECT COUNT(*) AS n FROM users")
    return int(row["n"]) if row else 0


def get(db: Database, username: str) -> sqlite3.Row | None:
    return db.query_one("SELECT * FROM users WHERE username = ?", (username,))


def list_users(db: Database) -> list[sqlite3.Row]:
    return db.query("SELECT username, role, scope, created, disabled FROM users ORDER BY username")


def create(db: Database, username: str, password_hash: str, role: str, scope: str = "") -> None:
    db.execute(
        "INSERT INTO users(username, password_hash, role, scope, created) VALUES (?, ?, ?, ?, ?)",
        (username, password_hash, role, scope, time.time()),
    )


def update(db: Database, username: str, **fields: object) -> int:
    allowed = {"password_hash", "role", "scope", "disabled"}
    sets = [f"{k} = ?" for k in fields if k in allowed]
    if not sets:
        return 0
    params = [fields[k] for k in fields if k in allowed] + [username]
    return db.execute(f"UPDATE users SET {', '.join(sets)} WHERE username = ?", params)


def delete(db: Database, username: str) -> int:
    return db.execute("DELETE FROM users WHERE username = ?", (username,))


def add_token(
    db: Database, token_hash: str, username: str, kind: str, name: str, expires: float | None
) -> None:
    db.execute(
        "INSERT INTO tokens(token_hash, username, kind, name, created, expires)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (token_hash, username, kind, name, time.time(), expires),
    )


def token_owner(db: Database, token_hash: str, now: float) -> sqlite3.Row | None:
    return db.query_one(
        "SELECT u.username, u.role, u.scope, t.kind FROM tokens t"
        " JOIN users u ON u.username = t.username"
        " WHERE t.token_hash = ? AND u.disabled = 0 AND (t.expires IS NULL OR t.expires > ?)",
        (token_hash, now),
    )


def list_tokens(db: Database, kind: str) -> list[sqlite3.Row]:
    return db.query(
        "SELECT substr(token_hash, 1, 12) AS id, username, name, created, expires FROM tokens"
        " WHERE kind = ? ORDER BY created",
        (kind,),
    )


def delete_token(db: Database, token_hash: str) -> int:
    return db.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))


def delete_token_by_prefix(db: Database, prefix: str) -> int:
    return db.execute(
        "DELETE FROM tokens WHERE kind = 'api' AND substr(token_hash, 1, 12) = ?", (prefix,)
    )


def delete_user_sessions(db: Database, username: str) -> int:
    return db.execute("DELETE FROM tokens WHERE username = ? AND kind = 'session'", (username,))


def purge_expired(db: Database, now: float) -> int:
    return db.execute("DELETE FROM tokens WHERE expires IS NOT NULL AND expires <= ?", (now,))


def get_pref(db: Database, username: str, name: str) -> str | None:
    row = db.query_one(
        "SELECT value FROM ui_prefs WHERE username = ? AND name = ?", (username, name)
    )
    return row["value"] if row else None


def put_pref(db: Database, username: str, name: str, value: str) -> None:
    db.execute(
        "INSERT INTO ui_prefs(username, name, value, updated) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(username, name) DO UPDATE SET value = excluded.value,"
        " updated = excluded.updated",
        (username, name, value, time.time()),
    )
