"""asyncio waits with a deadline that never lose a cancellation.

On Python 3.11 ``asyncio.wait_for`` drops a ``cancel()`` that arrives in the same loop turns
as the awaited result (CPython gh-86296; 3.12 re-implemented it on ``asyncio.timeout``): the
task carries on, and whoever awaits it after cancelling waits for ever. A GB/T 28181 platform
client's stop hung that way in CI (a keepalive's answer and the stop met), so every deadline
in the gateway goes through :func:`within`, which is ``asyncio.timeout`` underneath and so
counts cancellations (``Task.uncancel``) instead of guessing from the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw`` for at most ``timeout`` seconds (None: no limit); ``TimeoutError`` after.

    A coroutine runs in the caller's task and is cancelled at the deadline, as
    ``asyncio.wait_for`` would cancel it; a cancellation of the caller always propagates.
    """
    async with asyncio.timeout(timeout):
        return await aw


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes; True if it is set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
