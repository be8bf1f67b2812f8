from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.store import events as store
from gateway.store.db import Database


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.db")
    store.init(db)
    store.init(db)
    row = db.query_one("SELECT version FROM schema_versions WHERE component='events'")
    assert row["version"] == len(store.MIGRATIONS)


def test_event_upsert_and_filters(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.db")
    bus = EventBus(db)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    a = bus.publish(Event(camera="cam-01", type="motion", start=t0))
    bus.publish(Event(camera="v1/cam-02", type="camera_offline", start=t0 + timedelta(1)))
    a.end = t0 + timedelta(seconds=5)
    bus.publish(a)
    got = store.query(db, camera="cam-01")
    assert [e.id for e in got] == [a.id] and got[0].end == a.end
    assert [e.camera for e in store.query(db, camera_prefix="v1/")] == ["v1/cam-02"]
    assert store.query(db, type="motion", since=t0 + timedelta(hours=1)) == []


async def test_subscribers_receive_published_events(tmp_path: Path) -> None:
    bus = EventBus(Database(tmp_path / "g.db"))
    sub = bus.subscribe()
    seen: list[str] = []
    bus.add_listener(lambda e: seen.append(e.id))
    ev = await asyncio.to_thread(bus.publish, Event(camera="c", type="motion"))
    got = await sub.get(timeout=2)
    assert got.id == ev.id and seen == [ev.id]
