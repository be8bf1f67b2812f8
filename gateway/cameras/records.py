"""The registry's cameras in the database, and the events their status changes publish.

Status reports come from the ingest on the event loop, so their writes (and the events
they publish, which the bus stores) go to one ordered writer thread instead of blocking
the loop; called from a worker thread, a write happens there and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.cameras.model import Camera
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.store import cameras as store
from gateway.store.db import Database

log = logging.getLogger(__name__)

# A camera reporting the same status again is written at most this often.
REPEAT_SAVE_S = 60.0


class CameraRecords:
    """Loads, saves and deletes camera records; status writes in order, off the loop."""

    def __init__(self, db: Database, bus: EventBus) -> None:
        self.db = db
        self.bus = bus
        self._saved_at: dict[str, float] = {}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-db")
        store.init(db)

    def load(self) -> list[Camera]:
        """Every stored camera that still loads; a record that does not is skipped."""
        cams = []
        for record in store.load_all(self.db):
            try:
                cams.append(Camera.from_record(record))
            except (TypeError, ValueError) as err:
                log.warning("skipping a stored camera record that no longer loads: %s", err)
        return cams

    def save(self, cam: Camera) -> None:
        """Write the camera now, in the caller's thread."""
        store.upsert(self.db, cam.record())

    def save_status(self, cam: Camera, *, repeated: bool) -> None:
        """Write a status report in order, off the loop; a repeated one once a minute."""
        now = time.monotonic()
        if repeated and now - self._saved_at.get(cam.id, 0.0) <= REPEAT_SAVE_S:
            return
        self._saved_at[cam.id] = now
        self._off_loop(store.upsert, self.db, cam.record())

    def publish(self, event: Event) -> None:
        """Publish (and so store) an event after the status writes queued before it."""
        self._off_loop(self.bus.publish, event)

    async def delete(self, camera_id: str) -> None:
        await asyncio.to_thread(store.delete, self.db, camera_id)

    async def flush(self) -> None:
        """Wait until the status writes (and their events) queued so far are done."""
        with contextlib.suppress(RuntimeError):  # shut down: nothing is queued
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    async def close(self) -> None:
        """Let the pending status writes land, then stop the writer thread."""
        await asyncio.to_thread(self._writer.shutdown, True)

    def _off_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a database write in order; in the writer thread when called on the loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _logged(fn, *args)  # a worker thread already: write here
            return
        try:
            self._writer.submit(_logged, fn, *args)
        except RuntimeError:  # the writer was shut down (stopping): write here
            _logged(fn, *args)


def _logged(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("camera registry: %s failed", getattr(fn, "__name__", fn))
