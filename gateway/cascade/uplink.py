"""Child side of the cascade (上级平台连接): one outbound WebSocket to the parent.

The child dials out (so NAT and outbound-only firewalls are fine), says hello, sends
its catalog and then deltas, delivers its event outbox in order, and answers the
parent's requests (streams, snapshots, PTZ, recordings, clips) on the same
connection. It reconnects with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from gateway import __version__
from gateway.aio import within
from gateway.cameras.model import Camera
from gateway.cascade import protocol as p
from gateway.cascade.downlink import Downlink
from gateway.cascade.inspect import Inspections
from gateway.cascade.local import Local
from gateway.cascade.serve import MapAnswers, RequestServer
from gateway.cascade.tree import build, camera_node, join, rebase
from gateway.core import Core
from gateway.events.model import Event
from gateway.logs import redact
from gateway.store.outbox import Outbox
from gateway.streams.reach import port_open

log = logging.getLogger(__name__)
BATCH = 100
WINDOW = 1000  # events sent but not yet acknowledged
BACKOFF_MAX_S = 10.0
RESET_AFTER_S = 5.0  # a session welcomed this long ago counts as "was up"
PROBE_EVERY_S = 1.0


class Uplink:
    """The connection to the parent, kept up for as long as the gateway runs."""

    def __init__(
        self,
        core: Core,
        here: Local,
        downlink: Downlink,
        inspections: Inspections,
        maps: MapAnswers | None,
    ) -> None:
        self.bus = core.bus
        self.here = here
        self.downlink = downlink
        self.settings = core.settings.cascade
        parent = self.settings.parent
        if parent is None:
            raise ValueError("an uplink needs cascade.parent")
        self.parent = parent
        self.outbox = Outbox(core.db)
        self.enabled = True
        self.connected = False
        self._welcomed_at = 0.0
        self.connects = 0
        self.last_error = ""
        self.bytes_out = 0
        self.events_sent = 0
        self.acked_seq = 0
        self._sent_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._deltas: dict[str, p.BaseModel] = {}
        self._delta_ready = asyncio.Event()
        self._ws: Any = None
        self._send_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._last_rx = time.monotonic()
        self.server = RequestServer(core, here, self, inspections, maps)
        # Listening from construction, not from start(): parts built before us may publish
        # while they start (a village's missed daily report, say); those events wait in
        # the outbox for the parent like any other.
        self.bus.add_listener(self._on_event)

    # -- lifecycle --------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        registry = self.here.registry
        if registry is not None:
            registry.on_change(self._on_camera)
        self.downlink.on_change(self._on_child_change)
        self._task = asyncio.create_task(self._run(), name="cascade-uplink")

    async def stop(self) -> None:
        self.bus.remove_listener(self._on_event)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def set_enabled(self, enabled: bool) -> None:
        """Cut (False) or restore (True) the link; for tests and maintenance."""
        self.enabled = enabled
        self._kick.set()

    # -- feeding: called from any thread ---------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.data.get("report") is False:
            return  # a linkage rule that asked not to report upward
        self.outbox.append(event)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _on_camera(self, camera: Camera) -> None:
        """Registry listener (any thread): a camera changed, or was removed."""
        if self._loop is None:
            return
        registry = self.here.registry
        if registry is not None and registry.get(camera.id) is None:
            # Removed: a delta cannot say "gone", the whole catalog can.
            self._loop.call_soon_threadsafe(self._queue_delta, "*catalog", None)
            return
        node = camera_node(camera, self.settings.id)
        if node is not None:
            self._loop.call_soon_threadsafe(self._queue_delta, node.path, node)

    def _on_child_change(self, kind: str, value: Any) -> None:
        if kind == "camera":
            cam = value.model_copy(update={"path": join(self.settings.id, value.path)})
            self._queue_delta(cam.path, cam)
        else:
            link = self.downlink.links.get(value)
            path = join(self.settings.id, value)
            node = rebase(link.node(), self.settings.id) if link else None
            if node is None:
                self._queue_delta("*catalog", None)  # a child forgotten: resend all
            else:
                self._queue_delta(path, node)

    def _queue_delta(self, key: str, item: Any) -> None:
        self._deltas[key] = item
        self._delta_ready.set()

    # -- the connection ------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        if not self.parent.url.startswith(("https:", "wss:")):
            return None
        ctx = ssl.create_default_context()
        if self.parent.tls_fingerprint:
            # Pinned: trust exactly that certificate, checked after the handshake.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _ws_url(self) -> str:
        url = self.parent.url.rstrip("/")
        url = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return url + "/api/v1/cascade/ws"

    async def _run(self) -> None:
        delay = 0.5
        while True:
            if not self.enabled:
                self._kick.clear()
                await self._kick.wait()
                continue
            self._welcomed_at = 0.0
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.last_error = str(err)[:300]
                log.warning("uplink to %s: %s", redact(self.parent.url), err)
            finally:
                self.connected = False
                self._ws = None
            if self._welcomed_at and time.monotonic() - self._welcomed_at > RESET_AFTER_S:
                delay = 0.5  # it was really up: start the backoff again
            await self._wait_retry(min(delay, BACKOFF_MAX_S) * (0.8 + 0.4 * random.random()))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _wait_retry(self, wait: float) -> None:
        """Wait before redialling; end early on a kick, or as soon as the parent's port
        answers again (a bare TCP connect once a second), so a restarted parent sees
        its children back within about a second, not after the grown backoff."""
        self._kick.clear()
        target = _address(self.parent.url)
        # Only a parent that is down is probed: one whose port answers but refuses the
        # session (a revoked token, say) keeps the plain backoff.
        probe = target is not None and wait > PROBE_EVERY_S and not await port_open(*target)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await within(self._kick.wait(), min(left, PROBE_EVERY_S))
                return
            if probe and target is not None and await port_open(*target):
                return

    async def _session(self) -> None:
        headers = {"Authorization": f"Bearer {self.parent.token.get_secret_value()}"}
        async with connect(
            self._ws_url(),
            additional_headers=headers,
            ssl=self._ssl(),
            max_size=p.MAX_BINARY_BYTES + p.HEADER_SIZE,
            ping_interval=None,  # our own heartbeats, which the parent also watches
            open_timeout=10,
            close_timeout=2,
            write_limit=256 * 1024,
            user_agent_header=f"gateway/{__version__}",
            create_connection=_pinned(self.parent.tls_fingerprint),
        ) as ws:
            await ws.send(
                p.dump(
                    p.Hello(
                        type="hello",
                        gateway=self.settings.id,
                        level=self.settings.level,
                        name=self.settings.name,
                        outbox_epoch=self.outbox.epoch,
                        software=__version__,
                    )
                )
            )
            welcome = p.parse_parent(await within(ws.recv(), 10))
            if not isinstance(welcome, p.Welcome):
                raise p.ProtocolError(f"expected welcome, got {welcome.type}")
            self._ws = ws
            self._welcomed_at = time.monotonic()
            self.connected = True
            self.connects += 1
            self.last_error = ""
            await asyncio.to_thread(self.outbox.ack, welcome.last_seq)
            self._sent_seq = self.acked_seq = welcome.last_seq
            self._deltas.clear()
            await self.send_text(p.Catalog(type="catalog", tree=build(self.here, self.settings.id)))
            log.info("uplink to %s up (parent %s)", redact(self.parent.url), welcome.parent)
            tasks = [
                asyncio.create_task(self._reader(ws)),
                asyncio.create_task(self._heartbeats(ws)),
                asyncio.create_task(self._pump_events()),
                asyncio.create_task(self._pump_deltas()),
                asyncio.create_task(self._watch_enabled(ws)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception():
                        raise task.exception()  # type: ignore[misc]
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self.server.close_all()

    async def send_text(self, msg: p.BaseModel) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionError("uplink is down")
        text = p.dump(msg)
        async with self._send_lock:
            await ws.send(text)
        self.bytes_out += len(text)

    async def send_bytes(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            raise ConnectionError("uplink is down")
        async with self._send_lock:
            await ws.send(data)
        self.bytes_out += len(data)

    async def _watch_enabled(self, ws: Any) -> None:
        while self.enabled:
            self._kick.clear()
            await self._kick.wait()
        log.warning("uplink cut by request")
        await ws.close(1000, "uplink disabled")

    async def _heartbeats(self, ws: Any) -> None:
        """Send heartbeats; give up on a parent silent for three periods (at least 6 s)."""
        period = self.settings.heartbeat_s
        limit = max(3 * period, 6.0)
        while True:
            await self.send_text(p.Heartbeat(type="heartbeat", time=time.time()))
            await asyncio.sleep(period)
            if time.monotonic() - self._last_rx > limit:
                raise ConnectionError(f"parent silent for {limit:.0f}s")

    async def _reader(self, ws: Any) -> None:
        self._last_rx = time.monotonic()
        async for raw in ws:
            self._last_rx = time.monotonic()
            if isinstance(raw, bytes):
                log.warning("uplink: unexpected binary frame from the parent ignored")
                continue
            try:
                msg = p.parse_parent(raw)
            except p.ProtocolError as err:
                log.warning("uplink: message from the parent rejected: %s", err)
                continue
            if isinstance(msg, p.Ack):
                if msg.seq > self.acked_seq:
                    self.acked_seq = msg.seq
                    await asyncio.to_thread(self.outbox.ack, msg.seq)
                    self._wake.set()
            elif isinstance(msg, p.Request):
                self.server.handle(msg)

    async def _pump_events(self) -> None:
        while True:
            # Cleared before reading, never after: an event appended while the read runs
            # sets it again, so the wait below returns at once (clearing after the read
            # lost that wake-up and left the last event of a burst in the outbox).
            self._wake.clear()
            if self._sent_seq - self.acked_seq < WINDOW:
                batch = await asyncio.to_thread(self.outbox.read, self._sent_seq, BATCH)
                if batch:
                    items = [p.OutboxItem(seq=seq, event=self._upward(ev)) for seq, ev in batch]
                    await self.send_text(p.Events(type="events", items=items))
                    self._sent_seq = batch[-1][0]
                    self.events_sent += len(batch)
                    continue
            await self._wake.wait()

    def _upward(self, ev: Event) -> Event:
        """The event as the parent sees it: camera and source under this gateway's id."""
        me = self.settings.id
        update: dict[str, Any] = {
            "camera": join(me, ev.camera) if ev.camera else me,
            # Raised here (source empty or our own id, as parts set it) or below us.
            "source": me if ev.source in ("", me) else join(me, ev.source),
        }
        cams = ev.data.get("cameras") if ev.type == "linkage" else None
        if isinstance(cams, list):
            # A linkage group names cameras relative to its gateway: keep them addressable.
            update["data"] = {**ev.data, "cameras": [join(me, str(c)) for c in cams]}
        return ev.model_copy(update=update)

    async def _pump_deltas(self) -> None:
        while True:
            await self._delta_ready.wait()
            self._delta_ready.clear()
            await asyncio.sleep(0.05)  # coalesce bursts (a child reconnecting, many cams)
            deltas, self._deltas = self._deltas, {}
            if "*catalog" in deltas:
                await self.send_text(
                    p.Catalog(type="catalog", tree=build(self.here, self.settings.id))
                )
                continue
            for item in deltas.values():
                if isinstance(item, p.CameraNode):
                    await self.send_text(p.CameraDelta(type="camera", camera=item))
                elif isinstance(item, p.GatewayNode):
                    await self.send_text(p.NodeDelta(type="node", node=item))

    def stats(self) -> dict[str, Any]:
        return {
            "parent": redact(self.parent.url),
            "enabled": self.enabled,
            "connected": self.connected,
            "connects": self.connects,
            "last_error": self.last_error,
            "bytes_out": self.bytes_out,
            "events_sent": self.events_sent,
            "acked_seq": self.acked_seq,
            "outbox_pending": self.outbox.pending(),
            "streams": self.server.stats(),
        }


def _address(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


def _pinned(pin: str | None) -> type[ClientConnection]:
    """A connection class that checks the parent's certificate before the HTTP upgrade.

    The check must come before the upgrade request, which carries the token: a parent
    with the wrong certificate never sees it.
    """
    if not pin:
        return ClientConnection
    want = pin.replace(":", "").strip().lower()

    class PinnedConnection(ClientConnection):
        async def handshake(self, *args: Any, **kwargs: Any) -> None:
            sslobj = self.transport.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj else None
            if not der or hashlib.sha256(der).hexdigest() != want:
                raise ConnectionError("parent certificate does not match the pinned fingerprint")
            await super().handshake(*args, **kwargs)

    return PinnedConnection
