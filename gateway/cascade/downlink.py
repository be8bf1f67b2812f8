"""Parent side of the cascade (下级接入): child sessions, their trees, events and requests.

A child connects to ``/api/v1/cascade/ws`` with its token; the endpoint hands the
accepted WebSocket to :meth:`Downlink.serve`. Everything the child says is checked
against the name its token was issued for: every path must start with that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocketDisconnect

from gateway.aio import within
from gateway.cascade import protocol as p
from gateway.cascade.routing import Routing
from gateway.cascade.session import (
    MAX_TRANSFER_BYTES,
    ChildLink,
    ChildSession,
)
from gateway.core import Core
from gateway.events.model import Event
from gateway.store import children as child_store
from gateway.store import events as event_store

log = logging.getLogger(__name__)
ChangeListener = Callable[[str, Any], None]


class Downlink(Routing):
    """Every child of this gateway: sessions, merged subtrees, events, routed requests."""

    def __init__(self, core: Core) -> None:
        self.settings = core.settings.cascade
        self.bus = core.bus
        self.db = core.db
        child_store.init(self.db)
        self.links: dict[str, ChildLink] = {}
        self._listeners: list[ChangeListener] = []
        self._monitor: asyncio.Task[None] | None = None
        self._snap_tasks: set[asyncio.Task[None]] = set()
        self.transfers_dropped = 0  # bodies ended because their reader fell behind
        for row in child_store.list_all(self.db):
            if row.revoked is not None:
                continue
            link = self._link(row.name)
            link.epoch, link.last_seq, link.last_seen = (
                row.outbox_epoch,
                row.last_seq,
                row.last_seen,
            )
            if row.catalog:
                with contextlib.suppress(Exception):
                    link.tree = p.GatewayNode.model_validate_json(row.catalog)

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self._monitor = asyncio.create_task(self._watch(), name="cascade-downlink-monitor")

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        for link in list(self.links.values()):
            if link.session:
                await link.session.close(1001, "parent stopping")

    async def _watch(self) -> None:
        """Offline after silence; close sessions whose token was revoked meanwhile."""
        settings = self.settings
        tick = 0
        while True:
            await asyncio.sleep(0.25)
            tick += 1
            now = time.monotonic()
            for link in list(self.links.values()):
                s = link.session
                if s is None or s.closed:
                    continue
                if now - s.last_msg > settings.offline_after_s:
                    log.warning("child %s silent for %.1fs: offline", link.name, now - s.last_msg)
                    await s.close(4008, "heartbeat timeout")
                    self._session_ended(link, s)
            if tick % 8 == 0:
                await self.sync_children()

    async def sync_children(self) -> None:
        """Follow the children table (also changed by ``gateway children`` in another process).

        A newly issued child shows in the tree (offline until it connects); a revoked
        one is disconnected and leaves the tree.
        """
        rows = await asyncio.to_thread(child_store.list_all, self.db)
        active = {c.name for c in rows if c.revoked is None}
        for name in active - set(self.links):
            self._link(name)
            self._changed("node", name)
        for name in set(self.links) - active:
            link = self.links[name]
            s = link.session
            if s is not None and not s.closed:
                log.warning("child %s: token revoked, closing its connection", name)
                await s.close(4003, "token revoked")
                self._session_ended(link, s)
            self.forget(name)

    # -- change notification ---------------------------------------------------
    def on_change(self, listener: ChangeListener) -> None:
        """``listener(kind, value)``: ("camera", CameraNode) or ("node", child name)."""
        self._listeners.append(listener)

    def _changed(self, kind: str, value: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, value)
            except Exception:
                log.exception("cascade change listener failed")

    def _link(self, name: str) -> ChildLink:
        link = self.links.get(name)
        if link is None:
            link = self.links[name] = ChildLink(name)
        return link

    def child_trees(self) -> list[p.GatewayNode]:
        """Every known child's subtree (offline ones marked so), paths relative to us."""
        return [self.links[n].node() for n in sorted(self.links)]

    def forget(self, name: str) -> None:
        self.links.pop(name, None)
        self._changed("node", name)

    # -- one child connection ----------------------------------------------------
    async def serve(self, ws: Any, name: str) -> None:
        """Run one child connection until it ends. ``ws`` is accepted already."""
        link = self._link(name)
        session = ChildSession(self, ws, name)
        try:
            hello = await self._handshake(session, link)
        except (p.ProtocolError, TimeoutError) as err:
            log.warning("child %s: handshake failed: %s", name, err)
            await session.close(4002, "handshake failed")
            return
        old = link.session
        if old is not None and not old.closed:
            log.info("child %s reconnected; closing its previous connection", name)
            await old.close(4009, "replaced by a new connection")
            self._session_ended(link, old)
        link.session = session
        link.level, link.display_name = hello.level, hello.name
        link.last_seen = time.time()
        log.info("child %s (%s) connected", name, hello.level or "?")
        self._changed("node", name)
        try:
            await self._read_loop(session, link)
        except (WebSocketDisconnect, RuntimeError, ConnectionError) as err:
            # The socket went away under us (reset, closed while sending): a normal end.
            log.info("child %s connection ended: %s", name, type(err).__name__)
        except Exception:
            log.exception("child %s: session failed", name)
            await session.close(1011, "internal error")
        finally:
            self._session_ended(link, session)

    async def _handshake(self, session: ChildSession, link: ChildLink) -> p.Hello:
        raw = await within(session.ws.receive(), 10)
        text = raw.get("text")
        if text is None:
            raise p.ProtocolError("first message must be a text hello")
        msg = p.parse_child(text)
        if not isinstance(msg, p.Hello):
            raise p.ProtocolError(f"first message must be hello, not {msg.type}")
        if msg.gateway != link.name:
            raise p.ProtocolError(
                f"gateway id {msg.gateway!r} does not match its token's child {link.name!r}"
            )
        if msg.outbox_epoch != link.epoch:
            # A new outbox (first contact or a wiped child): its seq starts again.
            link.epoch, link.last_seq = msg.outbox_epoch, 0
            await asyncio.to_thread(child_store.mark_delivered, self.db, link.name, link.epoch, 0)
        await session.send(
            p.Welcome(
                type="welcome",
                parent=self.settings.id,
                last_seq=link.last_seq,
                heartbeat_s=self.settings.heartbeat_s,
            )
        )
        return msg

    def _session_ended(self, link: ChildLink, session: ChildSession) -> None:
        session.closed = True
        session.fail_all()
        if link.session is session:
            link.session = None
            link.last_seen = time.time()
            log.info("child %s offline", link.name)
            self._changed("node", link.name)

    async def _read_loop(self, session: ChildSession, link: ChildLink) -> None:
        while not session.closed:
            raw = await session.ws.receive()
            if raw.get("type") == "websocket.disconnect":
                return
            session.last_msg = time.monotonic()
            data = raw.get("bytes")
            try:
                if data is not None:
                    session.bytes_in += len(data)
                    self._on_binary(session, data)
                    continue
                text = raw.get("text") or ""
                session.bytes_in += len(text)
                await self._on_text(session, link, p.parse_child(text))
            except p.ProtocolError as err:
                session.rejected += 1
                link.rejected += 1
                log.warning("child %s: message rejected: %s", link.name, err)

    def _on_binary(self, session: ChildSession, data: bytes) -> None:
        frame = p.decode_frame(data)
        ch = session.channels.get(frame.channel)
        if ch is None:
            return  # a stream closed a moment ago; late frames are normal
        ch.bytes += len(frame.payload)
        ch.frames += 1
        if frame.au is not None:
            if ch.on_au is not None:
                ch.on_au(frame.au)
        elif ch.bytes > MAX_TRANSFER_BYTES:
            ch.end(f"transfer larger than {MAX_TRANSFER_BYTES} bytes")
        elif not ch.overflowed and not ch.put(frame.payload):
            session.transfers_dropped += 1
            self.transfers_dropped += 1
            log.warning("child %s: channel %d: %s", session.name, ch.number, ch.ended.result())

    def _check_path(self, link: ChildLink, path: str, what: str) -> None:
        if not p.valid_path(path):
            raise p.ProtocolError(f"{what} {path[:80]!r} is not a valid path")
        if not p.under(path, link.name):
            raise p.ProtocolError(
                f"{what} {path[:80]!r} is outside the child's subtree {link.name!r}"
            )

    async def _on_text(self, session: ChildSession, link: ChildLink, msg: Any) -> None:
        if isinstance(msg, p.Heartbeat):
            await session.send(p.Heartbeat(type="heartbeat", time=time.time()))
        elif isinstance(msg, p.Catalog):
            if msg.tree.id != link.name:
                raise p.ProtocolError(f"catalog root {msg.tree.id!r} is not {link.name!r}")
            p.check_tree(msg.tree, link.name)
            link.tree = msg.tree
            catalog = msg.tree.model_dump_json()
            await asyncio.to_thread(child_store.save_catalog, self.db, link.name, catalog)
            self._changed("node", link.name)
        elif isinstance(msg, p.CameraDelta):
            self._on_camera(link, msg.camera)
        elif isinstance(msg, p.NodeDelta):
            self._on_node(link, msg.node)
        elif isinstance(msg, p.Events):
            await self._on_events(session, link, msg)
        elif isinstance(msg, p.Response):
            fut = session.pending.get(msg.id)
            if fut is not None and not fut.done():
                fut.set_result(msg)
            body = session.req_channels.pop(msg.id, None)
            if body is not None:
                body.chunks.put_nowait(None)  # chunks came before the response
        elif isinstance(msg, p.StreamInfoMsg):
            ch = session.channels.get(msg.channel)
            if ch is not None:
                ch.info = msg
                if ch.on_info is not None:
                    ch.on_info(msg)
        elif isinstance(msg, p.StreamEnd):
            ch = session.channels.pop(msg.channel, None)
            if ch is not None:
                ch.end(msg.reason or "ended by the child")
        else:
            raise p.ProtocolError(f"{msg.type} is not a child message")

    def _on_camera(self, link: ChildLink, cam: p.CameraNode) -> None:
        self._check_path(link, cam.path, "camera path")
        if link.tree is None:
            raise p.ProtocolError("camera delta before a catalog")
        node = _node_at(link.tree, cam.path.rsplit("/", 1)[0])
        if node is None:
            raise p.ProtocolError(f"camera delta for unknown node of {cam.path[:80]!r}")
        if not cam.path.endswith("/" + cam.id):
            raise p.ProtocolError(f"camera path {cam.path[:80]!r} does not end with its id")
        node.cameras = [c for c in node.cameras if c.id != cam.id] + [cam]
        node.cameras.sort(key=lambda c: c.id)
        self._changed("camera", cam)

    def _on_node(self, link: ChildLink, node: p.GatewayNode) -> None:
        self._check_path(link, node.path, "node path")
        p.check_tree(node, node.path)
        if link.tree is None:
            raise p.ProtocolError("node delta before a catalog")
        if node.path == link.name:
            link.tree = node
        else:
            parent = _node_at(link.tree, node.path.rsplit("/", 1)[0])
            if parent is None:
                raise p.ProtocolError(f"node delta below an unknown node: {node.path[:80]!r}")
            parent.children = sorted(
                [c for c in parent.children if c.id != node.id] + [node], key=lambda c: c.id
            )
        p.check_tree(link.tree, link.name)
        self._changed("node", link.name)

    async def _on_events(self, session: ChildSession, link: ChildLink, msg: p.Events) -> None:
        # The database work (dedupe, store, delivery mark) runs in a thread, off the
        # loop every stream and request shares; bus listeners take any thread.
        wanted = await asyncio.to_thread(self._apply_events, link, msg)
        for event_id in wanted:
            self._want_snapshot(session, event_id)
        await session.send(p.Ack(type="ack", seq=link.last_seq))

    def _apply_events(self, link: ChildLink, msg: p.Events) -> list[str]:
        """Store and publish a batch of a child's events; the ids whose snapshot to fetch."""
        bus = self.bus
        wanted: list[str] = []
        for item in msg.items:
            if item.seq <= link.last_seq:
                link.duplicates += 1
                continue
            if item.seq != link.last_seq + 1 and link.last_seq:
                # Gaps are legal (the child's outbox may have shed rows); say so.
                log.info(
                    "child %s: events %d..%d missing", link.name, link.last_seq + 1, item.seq - 1
                )
            ev = item.event
            self._check_path(link, ev.camera or link.name, "event camera")
            if ev.source:
                self._check_path(link, ev.source, "event source")
            ev, has_snapshot = _snapshot_link(ev)
            known = event_store.get(self.db, ev.id)
            if known is None or known != ev:
                bus.publish(ev)
                link.events_in += 1
                if has_snapshot:
                    wanted.append(ev.id)
            else:
                link.duplicates += 1
            link.last_seq = item.seq
        child_store.mark_delivered(self.db, link.name, link.epoch, link.last_seq)
        return wanted

    def stats(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self.links):
            link = self.links[name]
            s = link.session
            out.append(
                {
                    "name": name,
                    "online": link.online,
                    "level": link.level,
                    "last_seen": link.last_seen,
                    "events_in": link.events_in,
                    "duplicates": link.duplicates,
                    "rejected": link.rejected,
                    "last_seq": link.last_seq,
                    "bytes_in": s.bytes_in if s else 0,
                    "streams": [
                        {"channel": c.number, "frames": c.frames, "bytes": c.bytes}
                        for c in (s.channels.values() if s else [])
                    ],
                }
            )
        return out


def _node_at(root: p.GatewayNode, path: str) -> p.GatewayNode | None:
    if root.path == path:
        return root
    for child in root.children:
        if p.under(path, child.path):
            return _node_at(child, path)
    return None


def _snapshot_link(ev: Event) -> tuple[Event, bool]:
    """Keep a child's snapshot URL only in the one form this gateway serves itself.

    Anything else (another host, a script URL) is dropped: the UI must not follow
    links a child made up.
    """
    if not ev.snapshot_url:
        return ev, False
    if ev.snapshot_url == f"/api/v1/events/{ev.id}/snapshot.jpg":
        return ev, True
    return ev.model_copy(update={"snapshot_url": None}), False
