"""One child's connection as the parent holds it: requests by id, channels, state.

:class:`ChildSession` is one live WebSocket; :class:`ChildLink` is what the parent
knows of a child whether it is connected or not (its last tree, delivery marks).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any

from gateway.aio import within
from gateway.cascade import protocol as p

MAX_TRANSFER_BYTES = 512 * 1024 * 1024
# Body bytes a channel holds for a reader that has not taken them yet. The child's
# frames share one WebSocket with live video and heartbeats, so reading cannot pause
# for one slow reader (that would stall every stream and look like a dead child): a
# transfer whose reader falls this far behind is ended, and counted.
MAX_BUFFERED_BYTES = 32 * 1024 * 1024


class ChildGone(Exception):
    """The child is not connected (or went away during the request)."""


class RemoteError(Exception):
    """The child answered a request with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Channel:
    """One open remote stream or body transfer on a child session."""

    def __init__(self, number: int, max_buffered: int = MAX_BUFFERED_BYTES) -> None:
        self.number = number
        self.on_au: Callable[[Any], None] | None = None
        self.on_info: Callable[[p.StreamInfoMsg], None] | None = None
        # The latest stream info: it may come right behind the open response, before the
        # opener has had a turn to set ``on_info``.
        self.info: p.StreamInfoMsg | None = None
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # Body chunks; None ends the body. Bounded in bytes by ``put``.
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.bytes = 0
        self.frames = 0
        self.max_buffered = max_buffered
        self.buffered = 0
        self.overflowed = False

    def put(self, chunk: bytes) -> bool:
        """Queue a body chunk; False (and the body ends) when the reader is too far behind."""
        if self.overflowed:
            return False
        if self.buffered + len(chunk) > self.max_buffered:
            self.overflowed = True
            self.end(
                f"the reader fell more than {self.max_buffered // (1024 * 1024)} MB behind;"
                " transfer dropped"
            )
            return False
        self.buffered += len(chunk)
        self.chunks.put_nowait(chunk)
        return True

    async def get(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        chunk = await self.chunks.get()
        if chunk is not None:
            self.buffered -= len(chunk)
        return chunk

    def drain(self) -> bytes:
        """Every chunk received so far, joined (a body complete before its response)."""
        parts = []
        while not self.chunks.empty():
            chunk = self.chunks.get_nowait()
            if chunk:
                self.buffered -= len(chunk)
                parts.append(chunk)
        return b"".join(parts)

    def end(self, reason: str) -> None:
        if self.ended.done():
            return  # the body's end marker is queued once
        self.ended.set_result(reason)
        self.chunks.put_nowait(None)


class ChildSession:
    """One live WebSocket from a child."""

    def __init__(self, downlink: Any, ws: Any, name: str) -> None:
        self.downlink = downlink
        self.ws = ws
        self.name = name
        self.connected_at = time.time()
        self.last_msg = time.monotonic()
        self.closed = False
        self.rejected = 0
        self.bytes_in = 0
        self.transfers_dropped = 0  # bodies ended because their reader fell behind
        self._send_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future[p.Response]] = {}
        self.channels: dict[int, Channel] = {}
        # request id -> the channel its body comes on; the response closes the body.
        self.req_channels: dict[str, Channel] = {}

    async def send(self, msg: p.BaseModel) -> None:
        async with self._send_lock:
            await self.ws.send_text(p.dump(msg))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    def fail_all(self) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ChildGone(self.name))
        self.pending.clear()
        for ch in self.channels.values():
            ch.end("child disconnected")
        self.channels.clear()

    async def request(
        self,
        op: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        channel: Channel | None = None,
        timeout: float = 15.0,
    ) -> p.Response:
        """Send one request and wait for its response."""
        if self.closed:
            raise ChildGone(self.name)
        rid = f"r{next(self._ids)}"
        fut: asyncio.Future[p.Response] = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        if channel is not None:
            self.req_channels[rid] = channel
        msg = p.Request(
            type="request",
            id=rid,
            op=op,
            path=path,
            channel=channel.number if channel else 0,
            params=params or {},
        )
        try:
            await self.send(msg)
            return await within(fut, timeout)
        except TimeoutError:
            raise RemoteError(
                504, f"child {self.name} did not answer {op} in {timeout:.0f}s"
            ) from None
        finally:
            self.pending.pop(rid, None)
            self.req_channels.pop(rid, None)

    def open_channel(self) -> Channel:
        ch = Channel(next(self._ids))
        self.channels[ch.number] = ch
        return ch


class ChildLink:
    """What the parent knows of one child, connected or not."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tree: p.GatewayNode | None = None
        self.session: ChildSession | None = None
        self.level = ""
        self.display_name = ""
        self.epoch = ""
        self.last_seq = 0
        self.last_seen: float | None = None
        self.events_in = 0
        self.duplicates = 0
        self.rejected = 0

    @property
    def online(self) -> bool:
        return self.session is not None and not self.session.closed

    def node(self) -> p.GatewayNode:
        if self.tree is None:
            base = p.GatewayNode(
                id=self.name,
                path=self.name,
                name=self.display_name,
                level=self.level,
                status="offline",
            )
            return base
        return self.tree if self.online else p.offline(self.tree)
