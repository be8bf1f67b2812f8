"""Retention locks of exports, set and released where the footage is recorded.

This gateway's cameras are locked in its own index; a child's camera through the tree
(:func:`gateway.cascade.access.lock`), so the village that records it keeps the span.
Locks are named ``export:<gateway>/<id>``; a child can only be asked to set or drop locks
with that prefix, never its own event locks. A release a child could not take (offline)
is kept and retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.cascade import access
from gateway.cascade.local import Local
from gateway.core import Core
from gateway.export.sources import iso
from gateway.store import exports as store
from gateway.store import recordings as rec_store

log = logging.getLogger(__name__)
UNLOCK_RETRY_S = 30.0


class ExportLocks:
    """Locks and releases the spans of exports, here and below."""

    def __init__(self, core: Core, here: Local) -> None:
        self.core = core  # its db and path: the locks' names are unique in the whole tree
        self.db = core.db
        self.here = here

    def owner(self, export_id: str) -> str:
        """The name of an export's locks, unique in the whole tree."""
        return f"{access.LOCK_OWNER_PREFIX}{self.core.path}/{export_id}"

    def lock_local(self, job: dict[str, Any], start: float, end: float) -> None:
        """Lock this gateway's cameras' span at once (a queued job must not lose it)."""
        for cam in job["cameras"]:
            if "/" not in cam["path"] and self.here.recorder is not None:
                rec_store.add_lock(self.db, cam["path"], start, end, self.owner(job["id"]))
                cam["locked"] = True

    async def lock_remote(
        self, job: dict[str, Any], cam: dict[str, Any], t0: float, t1: float
    ) -> None:
        """Lock a child's camera's span where it is recorded; a failure is noted, not fatal."""
        params = {"owner": self.owner(job["id"]), "start": iso(t0), "end": iso(t1), "locked": True}
        try:
            await access.lock(self.here, cam["path"], params)
            cam["locked"] = True
        except (access.AccessError, TimeoutError, ConnectionError) as err:
            cam["locked"] = False
            cam["lock_error"] = str(err)[:300]
            log.warning(
                "export %s: could not lock %s at its gateway: %s", job["id"], cam["path"], err
            )

    async def unlock_remote(self, owner: str, path: str) -> bool:
        try:
            await access.lock(self.here, path, {"owner": owner, "locked": False})
        except access.AccessError as err:
            # The camera or its child is gone for good (404): nothing left to release.
            return err.status == 404
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def release(self, job: dict[str, Any]) -> None:
        """Drop the export's locks here and at every child; retry later where a child is offline."""
        owner = self.owner(job["id"])
        await asyncio.to_thread(rec_store.remove_event_locks, self.db, owner)
        for cam in job["cameras"]:
            if "/" in cam["path"] and not await self.unlock_remote(owner, cam["path"]):
                await asyncio.to_thread(store.add_unlock, self.db, owner, cam["path"], time.time())
                log.info(
                    "export %s: lock on %s released later (child offline)", job["id"], cam["path"]
                )

    async def retry_loop(self) -> None:
        while True:
            await asyncio.sleep(UNLOCK_RETRY_S)
            try:
                for owner, path in await asyncio.to_thread(store.pending_unlocks, self.db):
                    if await self.unlock_remote(owner, path):
                        await asyncio.to_thread(store.done_unlock, self.db, owner, path)
            except Exception:
                log.exception("export: releasing locks at children failed")
