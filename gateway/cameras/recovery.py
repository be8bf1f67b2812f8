"""Background probing of the registry's ONVIF cameras: all of them at start, then again
every ``interval_s`` those our own probe found failing, until they answer.

Only recovery: a camera is marked offline by whoever saw it fail (the ingest, a probe);
an unauthorised one waits for new credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.cameras.model import Camera
from gateway.cameras.registry_errors import CameraNotFound

# How many cameras are probed at once.
CONCURRENCY = 8


class Recovery:
    """Probes cameras through ``refresh(camera_id)``; ``cameras()`` lists the inventory."""

    def __init__(
        self,
        refresh: Callable[[str], Awaitable[object]],
        cameras: Callable[[], list[Camera]],
        interval_s: float = 60.0,
    ) -> None:
        self._refresh = refresh
        self._cameras = cameras
        # ONVIF cameras that were unreachable or failed are probed again this often.
        self.interval_s = interval_s
        self._failed: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Probe every enabled ONVIF camera once, then keep recovering the failing ones."""
        ids = [c.id for c in self._cameras() if c.onvif and c.enabled]
        if ids:
            self._spawn(self.refresh_all(ids))
        self._spawn(self._recover())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def probed(self, camera_id: str, failed: bool) -> None:
        """Note how our probe of the camera went."""
        if failed:
            self._failed.add(camera_id)
        else:
            self._failed.discard(camera_id)

    async def refresh_all(self, ids: list[str]) -> None:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(camera_id: str) -> None:
            async with sem:
                with contextlib.suppress(CameraNotFound):
                    await self._refresh(camera_id)

        await asyncio.gather(*(one(i) for i in ids))

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            # Only cameras our own probe found failing: a camera the ingest marked
            # offline stays the ingest's business (no flapping between the two).
            ids = [
                c.id
                for c in self._cameras()
                if c.id in self._failed and c.enabled and c.status in ("offline", "error")
            ]
            if ids:
                await self.refresh_all(ids)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
