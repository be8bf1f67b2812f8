"""Requests routed to children by path, and event snapshots fetched from them.

A mixin of :class:`~gateway.cascade.downlink.Downlink`: ``self.links`` maps child
names to :class:`~gateway.cascade.session.ChildLink`. A path's first element names
the child; the rest is the path as that child sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.cascade import protocol as p
from gateway.cascade.session import Channel, ChildGone, ChildLink, ChildSession, RemoteError
from gateway.store import events as event_store

log = logging.getLogger(__name__)


class Routing:
    """Send requests to the child that owns a path (see the module docstring)."""

    links: dict[str, ChildLink]
    db: Any
    _snap_tasks: set[asyncio.Task[None]]

    def _want_snapshot(self, session: ChildSession, event_id: str) -> None:
        """Fetch an event's snapshot from the child in the background, once.

        Stored under the same event id, so the child's snapshot URL works here as well
        and the parent of this gateway can fetch it from us in turn. Bounded: when many
        are in flight (an alarm storm on a thin link) the extra ones are skipped.
        """
        if len(self._snap_tasks) >= 8:
            return  # (one we already have is seen by the task, off the loop)
        task = asyncio.get_running_loop().create_task(self._fetch_snapshot(session, event_id))
        self._snap_tasks.add(task)
        task.add_done_callback(self._snap_tasks.discard)

    async def _fetch_snapshot(self, session: ChildSession, event_id: str) -> None:
        # The child may itself still be fetching it from its own child: try a few times.
        for delay in (0.3, 0.4, 0.5, 1.0, 2.0, 4.0):  # soon: the alarm list waits for it
            await asyncio.sleep(delay)
            if session.closed or (
                await asyncio.to_thread(event_store.get_snapshot, self.db, event_id) is not None
            ):
                return
            ch = session.open_channel()
            try:
                resp = await session.request(
                    "event_snapshot", "events", {"event_id": event_id}, channel=ch, timeout=30
                )
                body = ch.drain()
                if resp.ok and body[:2] == b"\xff\xd8" and len(body) <= 8 * 1024 * 1024:
                    await asyncio.to_thread(event_store.put_snapshot, self.db, event_id, body)
                    return
            except (ChildGone, RemoteError) as err:
                log.info("child %s: snapshot of event %s: %s", session.name, event_id, err)
                return
            finally:
                session.channels.pop(ch.number, None)

    # -- routed requests ---------------------------------------------------------------
    def route(self, path: str) -> tuple[ChildSession, str]:
        """The session of the child owning ``path`` and the path as that child sees it."""
        name, _, rest = path.partition("/")
        link = self.links.get(name)
        if link is None:
            raise KeyError(path)
        if not link.online or link.session is None:
            raise ChildGone(name)
        return link.session, rest

    def owns(self, path: str) -> bool:
        return "/" in path and path.partition("/")[0] in self.links

    async def request(
        self, path: str, op: str, params: dict[str, Any] | None = None, timeout: float = 15.0
    ) -> p.Response:
        session, rest = self.route(path)
        resp = await session.request(op, rest, params, timeout=timeout)
        if not resp.ok:
            raise RemoteError(resp.status, resp.error)
        return resp

    async def fetch(
        self, path: str, op: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> tuple[bytes, p.Response]:
        """A request whose answer has a body (snapshot): the whole body and the response."""
        session, rest = self.route(path)
        ch = session.open_channel()
        try:
            resp = await session.request(op, rest, params, channel=ch, timeout=timeout)
            if not resp.ok:
                raise RemoteError(resp.status, resp.error)
            return ch.drain(), resp
        finally:
            session.channels.pop(ch.number, None)

    async def open_stream(
        self, path: str, profile: str, variant: str | None
    ) -> tuple[ChildSession, Channel]:
        """Ask the owning child for a camera stream; frames arrive on the channel."""
        session, rest = self.route(path)
        ch = session.open_channel()
        params = {"profile": profile, "variant": variant}
        try:
            await self.request_on(session, "open_stream", rest, params, ch)
        except BaseException:
            session.channels.pop(ch.number, None)
            raise
        return session, ch

    async def request_on(
        self,
        session: ChildSession,
        op: str,
        path: str,
        params: dict[str, Any],
        ch: Channel | None = None,
        timeout: float = 20.0,
    ) -> p.Response:
        resp = await session.request(op, path, params, channel=ch, timeout=timeout)
        if not resp.ok:
            raise RemoteError(resp.status, resp.error)
        return resp

    async def close_stream(self, session: ChildSession, ch: Channel) -> None:
        session.channels.pop(ch.number, None)
        ch.end("closed")
        if not session.closed:
            with contextlib.suppress(Exception):
                await session.request("close_stream", "x", {}, channel=ch, timeout=5)
