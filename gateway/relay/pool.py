"""Viewers sent from worker processes, so that every core of the box sends.

One event loop sends ~110 1080p25 viewers (docs/benchmarks.md, relay); sending is
aiortc's Python per packet (RTP, SRTP, ``sendto``), so the way to more viewers is
more processes. With ``relay.workers: N`` the gateway keeps ingest, admission,
leases and audit, and N worker processes (:mod:`gateway.relay.worker`) hold the
peer connections.

A hub goes to a worker once, however many of its viewers that worker sends
(a *feed*: one subscription to the hub here, one ``UNIT`` frame per access unit
there); a new viewer goes to the least-loaded worker, preferring one that already
has its hub unless that one carries ``SPREAD_SLACK`` more viewers. So a camera
watched by a wall is sent by every worker, fed once to each; a camera with a few
viewers costs one feed.

A worker that dies ends its viewers (``relay worker exited``; the players
reconnect) and is started again. Implements :class:`~gateway.relay.peers.Peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.relay import wire
from gateway.relay.peers import OnClosed, PeerSettings, PeerStats
from gateway.relay.whep import OfferError
from gateway.streams.hub import Hub, HubClosed, Subscription

log = logging.getLogger(__name__)

SPREAD_SLACK = 8  # viewers a worker that has the hub may carry beyond the least loaded
REQUEST_TIMEOUT_S = 20.0
READY_TIMEOUT_S = 30.0
RESTART_BACKOFF_S = (0.5, 1, 2, 5, 10)
FEED_BUFFER = 240  # access units queued per feed before the oldest are shed


class WorkerGone(RuntimeError):
    pass


@dataclass(eq=False)
class _Feed:
    feed_id: int
    hub: Hub
    sub: Subscription
    task: asyncio.Task[None] | None = None
    sids: set[str] = field(default_factory=set)


class _Worker:
    """One worker process and its socket."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.alive = False
        self.feeds: dict[Hub, _Feed] = {}
        self.sids: dict[str, _Feed] = {}
        self.stats: dict[str, PeerStats] = {}
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.reader_task: asyncio.Task[None] | None = None
        self.started_at = 0.0

    @property
    def load(self) -> int:
        return len(self.sids)

    def send(self, *frames: bytes) -> None:
        if self.writer is None or self.writer.is_closing():
            raise WorkerGone(f"relay worker {self.index} is not running")
        self.writer.writelines(frames)


class WorkerPool:
    """``relay.workers`` processes sending viewers (see the module docstring)."""

    def __init__(
        self,
        count: int,
        settings: PeerSettings,
        on_closed: OnClosed,
        *,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        self.settings = settings
        self.on_closed = on_closed
        self.log = {"log_level": log_level, "log_json": log_json}
        self.workers = [_Worker(i) for i in range(count)]
        self.restarts = 0
        self._feed_drops_done = 0  # of feeds that ended
        self._ids = itertools.count(1)
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.gather(*(self._spawn(w) for w in self.workers))
        self._supervisor = asyncio.create_task(self._supervise(), name="relay-workers")
        log.info("relay: %d worker processes", len(self.workers))

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for w in self.workers:
            await self._shutdown(w)

    async def _spawn(self, w: _Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.relay.worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        w.reader, w.writer = await asyncio.open_connection(sock=ours, limit=wire.MAX_FRAME)
        w.started_at = time.monotonic()
        w.writer.write(wire.control({"op": "config", "peers": asdict(self.settings), **self.log}))
        # Viewers go to it once it has said so (its imports take a second or so).
        try:
            kind, msg = await asyncio.wait_for(wire.read(w.reader), READY_TIMEOUT_S)
            if kind != wire.CONTROL or msg.get("op") != "ready":
                raise wire.WireError(f"expected ready, got {msg!r:.80}")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, wire.WireError) as err:
            w.writer.close()
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            await w.proc.wait()
            raise OSError(f"relay worker {w.index} did not start: {err!r}") from None
        w.alive = True
        w.reader_task = asyncio.create_task(self._read(w), name=f"relay-worker-{w.index}")

    async def _shutdown(self, w: _Worker) -> None:
        if w.writer is not None:
            w.writer.close()
        if w.proc is not None and w.proc.returncode is None:
            try:
                await asyncio.wait_for(w.proc.wait(), 5)
            except TimeoutError:
                w.proc.kill()
                await w.proc.wait()
        if w.reader_task is not None:
            w.reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w.reader_task
        self._lost(w, "gateway stopping")

    async def _supervise(self) -> None:
        """Start a worker again when it dies, backing off when it keeps dying."""
        fails = 0
        while True:
            await asyncio.sleep(0.2)
            for w in self.workers:
                if w.alive or self._stopping:
                    continue
                if time.monotonic() - w.started_at > 60:
                    fails = 0
                await asyncio.sleep(RESTART_BACKOFF_S[min(fails, len(RESTART_BACKOFF_S) - 1)])
                fails += 1
                self.restarts += 1
                log.warning("relay: starting relay worker %d again", w.index)
                try:
                    await self._spawn(w)
                except OSError:
                    log.exception("relay: relay worker %d could not start", w.index)

    # -- from the worker ------------------------------------------------------------------
    async def _read(self, w: _Worker) -> None:
        assert w.reader is not None and w.proc is not None
        proc = w.proc  # the supervisor may start the next one before this one is reaped
        try:
            while True:
                kind, msg = await wire.read(w.reader)
                if kind != wire.CONTROL:
                    raise wire.WireError("a worker sent media")
                try:
                    self._on_message(w, msg)
                except (KeyError, TypeError, ValueError) as err:
                    raise wire.WireError(f"bad {msg.get('op')!r} message: {err!r}") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except wire.WireError as err:
            log.error("relay worker %d: %s; ending it", w.index, err)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        stopping = self._stopping
        self._lost(w, "relay worker exited")  # at once: no new viewer may go there
        if not stopping:
            code = await proc.wait()
            log.error("relay worker %d exited (%s); its viewers were ended", w.index, code)

    def _on_message(self, w: _Worker, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op in ("answer", "error"):
            fut = w.pending.pop(int(msg.get("rid") or 0), None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif op == "closed":
            sid = str(msg["sid"])
            if sid in w.sids:
                self._forget(w, sid)
                self.on_closed(sid, str(msg.get("reason", "")))
        elif op == "stats":
            for sid, row in dict(msg["peers"]).items():
                if sid in w.sids:
                    w.stats[sid] = PeerStats(*row)

    def _lost(self, w: _Worker, reason: str) -> None:
        """The worker is gone: fail its requests, end its viewers, drop its feeds."""
        w.alive = False
        if w.writer is not None:
            w.writer.close()
        w.writer = None
        for fut in w.pending.values():
            if not fut.done():
                fut.set_exception(WorkerGone(f"relay worker {w.index}: {reason}"))
        w.pending.clear()
        for sid in list(w.sids):
            self._forget(w, sid)
            if not self._stopping:
                self.on_closed(sid, reason)

    # -- Peers ------------------------------------------------------------------------------
    def _choose(self, hub: Hub) -> _Worker:
        alive = [w for w in self.workers if w.alive]
        if not alive:
            raise WorkerGone("no relay worker is running")
        least = min(alive, key=lambda w: w.load)
        fed = [w for w in alive if hub in w.feeds]
        if fed:
            best = min(fed, key=lambda w: w.load)
            if best.load <= least.load + SPREAD_SLACK:
                return best
        return least

    async def open(
        self,
        sid: str,
        hub: Hub,
        camera_id: str,
        offer_sdp: str,
        *,
        source_plid: str | None,
        h265_profile: int | None,
    ) -> str:
        w = self._choose(hub)
        feed = w.feeds.get(hub) or self._start_feed(w, hub)
        feed.sids.add(sid)
        w.sids[sid] = feed
        try:
            reply = await self._ask(
                w,
                {
                    "op": "open",
                    "sid": sid,
                    "feed": feed.feed_id,
                    "camera": camera_id,
                    "offer": offer_sdp,
                    "plid": source_plid,
                    "h265": h265_profile,
                },
            )
        except BaseException:
            if sid in w.sids:
                self._forget(w, sid)
                with contextlib.suppress(WorkerGone):
                    w.send(wire.control({"op": "close", "sid": sid}))
            raise
        return str(reply["sdp"])

    async def add_candidates(
        self, sid: str, candidates: Sequence[tuple[str | None, str]], end: bool
    ) -> None:
        w = self._owner(sid)
        if w is not None:
            msg = {"op": "candidates", "sid": sid, "candidates": list(candidates), "end": end}
            await self._ask(w, msg)

    async def close(self, sid: str) -> None:
        w = self._owner(sid)
        if w is None:
            return
        self._forget(w, sid)
        with contextlib.suppress(WorkerGone):
            w.send(wire.control({"op": "close", "sid": sid}))

    def stats(self, sid: str) -> PeerStats:
        w = self._owner(sid)
        if w is None:
            return PeerStats(state="closed")
        return w.stats.get(sid) or PeerStats()

    def _owner(self, sid: str) -> _Worker | None:
        return next((w for w in self.workers if sid in w.sids), None)

    async def _ask(self, w: _Worker, msg: dict[str, Any]) -> dict[str, Any]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        w.pending[rid] = fut
        try:
            w.send(wire.control({**msg, "rid": rid}))
            reply = await asyncio.wait_for(fut, REQUEST_TIMEOUT_S)
        except TimeoutError:
            raise WorkerGone(f"relay worker {w.index} did not answer") from None
        finally:
            w.pending.pop(rid, None)
        if reply["op"] == "error":
            if reply.get("kind") == "offer":
                raise OfferError(str(reply.get("message", "")))
            raise WorkerGone(f"relay worker {w.index}: {reply.get('message', '')}")
        return reply

    # -- feeds ------------------------------------------------------------------------------
    def _start_feed(self, w: _Worker, hub: Hub) -> _Feed:
        feed_id = next(self._ids)
        sub = hub.subscribe(f"relay-worker-{w.index}", maxsize=FEED_BUFFER)
        feed = _Feed(feed_id, hub, sub)
        try:
            w.send(wire.control({"op": "feed", "feed": feed_id, "key": hub.key}))
            # The cached GOP goes out now, before the viewer's open request, so the
            # worker's mirror hub can start the viewer on it.
            with contextlib.suppress(HubClosed):  # then the pump says feed_end
                while (au := sub.get_nowait()) is not None:
                    w.send(*wire.unit(feed_id, au))
        except WorkerGone:
            sub.close()
            raise
        w.feeds[hub] = feed
        feed.task = asyncio.create_task(self._pump(w, feed), name=f"relay-feed-{hub.key}")
        return feed

    async def _pump(self, w: _Worker, feed: _Feed) -> None:
        try:
            while True:
                au = await feed.sub.get()
                if w.writer is None:
                    return
                w.writer.writelines(wire.unit(feed.feed_id, au))
                await w.writer.drain()
        except HubClosed:
            with contextlib.suppress(WorkerGone):
                w.send(wire.control({"op": "feed_end", "feed": feed.feed_id}))
        except (ConnectionError, WorkerGone):
            pass
        finally:
            self._feed_drops_done += feed.sub.dropped

    def _forget(self, w: _Worker, sid: str) -> None:
        feed = w.sids.pop(sid, None)
        w.stats.pop(sid, None)
        if feed is None:
            return
        feed.sids.discard(sid)
        if not feed.sids and w.feeds.get(feed.hub) is feed:
            del w.feeds[feed.hub]
            feed.sub.close()
            if feed.task is not None:
                feed.task.cancel()
            with contextlib.suppress(WorkerGone):
                w.send(wire.control({"op": "feed_end", "feed": feed.feed_id}))

    @property
    def running(self) -> int:
        """Worker processes alive now."""
        return sum(w.alive for w in self.workers)

    @property
    def feed_drops(self) -> int:
        """Access units shed because a worker read its feed too slowly."""
        live = sum(f.sub.dropped for w in self.workers for f in w.feeds.values())
        return self._feed_drops_done + live

    def status(self) -> dict[str, Any]:
        return {
            "workers": [
                {
                    "index": w.index,
                    "pid": w.proc.pid if w.proc else None,
                    "alive": w.alive,
                    "viewers": w.load,
                    "feeds": len(w.feeds),
                }
                for w in self.workers
            ],
            "restarts": self.restarts,
            "feed_drops": self.feed_drops,
        }
