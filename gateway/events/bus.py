"""The in-process event bus: persist, then fan out to bounded async subscribers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from gateway.aio import within
from gateway.events.model import Event
from gateway.store import events as event_store
from gateway.store.db import Database

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class EventSubscription:
    """An async iterator over new events. Bounded: when full, the oldest is dropped."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize)
        self.loop = asyncio.get_running_loop()
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> EventSubscription:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()

    async def get(self, timeout: float | None = None) -> Event:
        return await within(self.queue.get(), timeout)

    def close(self) -> None:
        self._bus._unsubscribe(self)


class EventBus:
    """Publish events from any thread; they are stored, then delivered.

    Synchronous listeners (linkage, recorder, uplink outbox) are called in the
    publisher's thread right after the event is stored, so they must be quick and
    must not raise (errors are logged and counted). Async subscribers (SSE,
    WebSocket) get events through bounded queues on their own loop.
    """

    def __init__(self, db: Database | None) -> None:
        self.db = db
        if db is not None:
            event_store.init(db)
        self._subs: list[EventSubscription] = []
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.published = 0
        self.listener_errors = 0

    def publish(self, event: Event, snapshot_jpeg: bytes | None = None) -> Event:
        if self.db is not None:
            event_store.upsert(self.db, event)
            if snapshot_jpeg:
                event_store.put_snapshot(self.db, event.id, snapshot_jpeg)
        self.published += 1
        with self._lock:
            subs = list(self._subs)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                log.exception("event listener %r failed on event %s", listener, event.id)
        for sub in subs:
            sub.loop.call_soon_threadsafe(sub._offer, event)
        return event

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def subscribe(self, maxsize: int = 1000) -> EventSubscription:
        """Subscribe from a running event loop."""
        sub = EventSubscription(self, maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: EventSubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
