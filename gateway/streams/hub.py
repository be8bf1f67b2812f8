"""The per-camera-stream fan-out of access units (ARCHITECTURE decisions 1, 3, 4).

One ingest publishes; any number of subscribers read, each through its own bounded
buffer. A subscriber that falls behind loses the rest of the current GOP and resumes
at the next keyframe; it never slows the ingest or the other subscribers. The hub
keeps the current GOP so a new subscriber starts on a keyframe at once.

Thread-safe: ``publish`` may be called from the ingest thread, and a subscriber may
be read from asyncio (``await sub.get()``) or from a worker thread
(``sub.get_blocking()``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

from gateway.media.access_unit import AccessUnit, StreamInfo

# Bytes one subscriber may have queued (besides its count bound): a 4K camera's GOPs
# at 240 units can be hundreds of MB. Beyond it the subscriber sheds like a slow one.
SUB_MAX_BYTES = 64 * 1024 * 1024
# Bytes of the cached GOP: a camera with a very long GOP must not grow it without end.
GOP_MAX_BYTES = 64 * 1024 * 1024


class HubClosed(Exception):
    """The hub (or this subscription) was closed; no more access units will come."""


class Subscription:
    """One consumer's bounded view of a hub."""

    def __init__(self, hub: Hub, name: str, maxsize: int, max_bytes: int = SUB_MAX_BYTES) -> None:
        self.hub = hub
        self.name = name
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0  # queued
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self._queue: deque[AccessUnit] = deque()
        self._need_key = True
        self._cond = threading.Condition(threading.Lock())
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- producer side (hub) ---------------------------------------------------
    def _offer(self, au: AccessUnit) -> None:
        with self._cond:
            if self.closed:
                return
            if self._need_key:
                if not au.keyframe:
                    self.dropped += 1
                    return
                self._need_key = False
            size = len(au.data)
            if len(self._queue) >= self.maxsize or self.bytes + size > self.max_bytes:
                self._shed_locked(au)
                if not self._need_key and self.bytes + size > self.max_bytes:
                    # Even the newest GOP alone is too big: start again at a keyframe.
                    self.dropped += len(self._queue)
                    self._clear_locked()
                    self._need_key = not au.keyframe
                if self._need_key:
                    self.dropped += 1
                    return
            self._queue.append(au)
            self.bytes += size
            self._wake_locked()

    def _shed_locked(self, incoming: AccessUnit) -> None:
        """Too slow: drop whole GOPs from the head so the queue restarts on a keyframe.

        Keeps the newest queued GOP when there is one; otherwise empties the queue and,
        unless ``incoming`` is itself a keyframe, waits for the next one.
        """
        if incoming.keyframe:
            self.dropped += len(self._queue)
            self._clear_locked()
            return
        last_key = next(
            (i for i in range(len(self._queue) - 1, 0, -1) if self._queue[i].keyframe), 0
        )
        if last_key:
            for _ in range(last_key):
                self._pop_locked()
            self.dropped += last_key
        else:
            self.dropped += len(self._queue)
            self._clear_locked()
            self._need_key = True

    def _pop_locked(self) -> AccessUnit:
        au = self._queue.popleft()
        self.bytes -= len(au.data)
        return au

    def _clear_locked(self) -> None:
        self._queue.clear()
        self.bytes = 0

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    # -- consumer side -----------------------------------------------------------
    def get_nowait(self) -> AccessUnit | None:
        """The next access unit, or None if none is queued. Raises HubClosed."""
        with self._cond:
            if self._queue:
                self.delivered += 1
                return self._pop_locked()
            if self.closed:
                raise HubClosed(self.hub.key)
            return None

    async def get(self) -> AccessUnit:
        """Wait for the next access unit (asyncio). Raises HubClosed."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self._queue:
                    self.delivered += 1
                    return self._pop_locked()
                if self.closed:
                    raise HubClosed(self.hub.key)
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            try:
                await fut
            except asyncio.CancelledError:
                with self._cond:
                    self._waiters = [w for w in self._waiters if w[1] is not fut]
                raise

    def get_blocking(self, timeout: float | None = None) -> AccessUnit | None:
        """Wait for the next access unit (threads). None on timeout. Raises HubClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self.closed:
                    raise HubClosed(self.hub.key)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            self.delivered += 1
            return self._pop_locked()

    @property
    def qsize(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Leave the hub. Pending and future reads raise HubClosed."""
        self.hub._remove(self)
        self._close()

    def _close(self) -> None:
        with self._cond:
            self.closed = True
            self._clear_locked()
            self._wake_locked()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Hub:
    """Fan-out of one camera stream (e.g. ``cam-01/main``)."""

    def __init__(self, key: str, *, gop_limit: int = 1000) -> None:
        self.key = key
        self.info: StreamInfo | None = None
        self.closed = False
        self.published = 0
        self.bytes_in = 0
        self.last_wallclock = 0.0
        self._gop: list[AccessUnit] = []
        self._gop_bytes = 0
        self._gop_limit = gop_limit
        self.gop_overflows = 0
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._info_listeners: list[Callable[[StreamInfo], None]] = []

    def set_info(self, info: StreamInfo) -> None:
        self.info = info
        for listener in list(self._info_listeners):
            listener(info)

    def on_info(self, listener: Callable[[StreamInfo], None]) -> None:
        self._info_listeners.append(listener)

    def publish(self, au: AccessUnit) -> None:
        """Give one access unit to every subscriber (any thread)."""
        with self._lock:
            if self.closed:
                return
            self.published += 1
            self.bytes_in += len(au.data)
            self.last_wallclock = au.wallclock
            if au.keyframe:
                self._gop = [au]
                self._gop_bytes = len(au.data)
            elif self._gop:
                self._gop_bytes += len(au.data)
                if len(self._gop) < self._gop_limit and self._gop_bytes <= GOP_MAX_BYTES:
                    self._gop.append(au)
                else:
                    # A truncated GOP would hand a late subscriber a hole: none at all,
                    # and it waits for the next keyframe instead.
                    self._gop = []
                    self.gop_overflows += 1
            subs = list(self._subs)
        for sub in subs:
            sub._offer(au)

    def subscribe(
        self, name: str = "", maxsize: int = 240, *, from_gop: bool = True
    ) -> Subscription:
        """A new subscriber, starting with the cached GOP (a keyframe) if ``from_gop``."""
        sub = Subscription(self, name, maxsize)
        with self._lock:
            if self.closed:
                sub._close()
                return sub
            if from_gop:
                for au in self._gop[-maxsize:] if len(self._gop) <= maxsize else []:
                    sub._offer(au)
            self._subs.append(sub)
        return sub

    @property
    def subscribers(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs)

    @property
    def gop(self) -> list[AccessUnit]:
        with self._lock:
            return list(self._gop)

    def clear_gop(self) -> None:
        """Forget the cached GOP (on reconnect: old frames must not start a viewer)."""
        with self._lock:
            self._gop = []

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """End the stream for everyone."""
        with self._lock:
            self.closed = True
            subs, self._subs = self._subs, []
            self._gop = []
        for sub in subs:
            sub._close()


async def fresh_keyframe(hub: Hub, timeout: float, poll: float = 0.05) -> bytes | None:
    """The cached GOP's keyframe once the hub has fresh video; None if the hub closes
    or nothing fresh arrives within ``timeout`` seconds.

    Fresh: stamped by our clock within 3 s, or (a remote camera's units carry the first
    gateway's clock) still being published.
    """
    deadline = time.monotonic() + timeout
    published = None
    while True:
        gop = hub.gop
        if gop and gop[0].keyframe:
            if time.time() - hub.last_wallclock < 3.0:
                return gop[0].data
            if published is None:
                published = hub.published
            elif hub.published != published:
                return gop[0].data
        if hub.closed or time.monotonic() >= deadline:
            return None
        await asyncio.sleep(poll)
