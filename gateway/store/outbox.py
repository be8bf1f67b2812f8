"""The durable event outbox of the uplink: events wait here until the parent acks them.

Rows are numbered by ``seq`` (rising, never reused within one outbox ``epoch``); the
parent acknowledges the highest ``seq`` it has published, and the uplink deletes
everything up to it. The epoch is a random id made when the outbox is created, so a
parent can tell a wiped child (seq restarting at 1) from a redelivery.
"""

from __future__ import annotations

import os

from gateway.store.db import Database
from gateway.store.event import Event

MIGRATIONS = [
    """
    CREATE TABLE cascade_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE cascade_outbox_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
]


class Outbox:
    """Append, read in order, acknowledge. Thread-safe through :class:`Database`."""

    def __init__(self, db: Database, max_rows: int = 200_000) -> None:
        self.db = db
        self.max_rows = max_rows
        self.dropped = 0
        db.migrate("cascade_outbox", MIGRATIONS)
        row = db.query_one("SELECT value FROM cascade_outbox_meta WHERE key = 'epoch'")
        if row is None:
            self.epoch = os.urandom(8).hex()
            db.execute(
                "INSERT INTO cascade_outbox_meta(key, value) VALUES ('epoch', ?)", (self.epoch,)
            )
        else:
            self.epoch = row["value"]

    def append(self, event: Event) -> int:
        """Queue one event (or an update of one); returns its seq."""
        seq = self.db.execute(
            "INSERT INTO cascade_outbox(event_id, body) VALUES (?, ?)",
            (event.id, event.model_dump_json()),
        )
        if seq % 1000 == 0:
            self._trim()
        return seq

    def _trim(self) -> None:
        """Bound the outbox: after a very long outage the oldest events go first."""
        count = self.pending()
        if count > self.max_rows:
            excess = count - self.max_rows
            self.db.execute(
                "DELETE FROM cascade_outbox WHERE seq IN"
                " (SELECT seq FROM cascade_outbox ORDER BY seq LIMIT ?)",
                (excess,),
            )
            self.dropped += excess

    def read(self, after: int, limit: int) -> list[tuple[int, Event]]:
        rows = self.db.query(
            "SELECT seq, body FROM cascade_outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [(r["seq"], Event.model_validate_json(r["body"])) for r in rows]

    def ack(self, seq: int) -> None:
        """The parent has everything up to ``seq``: forget it."""
        self.db.execute("DELETE FROM cascade_outbox WHERE seq <= ?", (seq,))

    def pending(self) -> int:
        row = self.db.query_one("SELECT COUNT(*) AS n FROM cascade_outbox")
        return int(row["n"]) if row else 0

    def last_seq(self) -> int:
        row = self.db.query_one("SELECT MAX(seq) AS m FROM cascade_outbox")
        return int(row["m"] or 0) if row else 0
