"""A relay worker process: sends the viewers the gateway gives it (``relay.workers``).

Started by :class:`~gateway.relay.pool.WorkerPool` as
``python -m gateway.relay.worker FD``, FD being its end of a socketpair. It receives
each watched hub once (``UNIT`` frames of a feed, :mod:`gateway.relay.wire`) and
publishes it into a local mirror :class:`~gateway.streams.hub.Hub`, whose GOP cache
starts new viewers exactly as in the gateway; its viewers are ordinary
:class:`~gateway.relay.peers.LocalPeers`. It reports each peer's figures once a
second and every peer that ends on its own, and exits when the gateway's end of the
socket closes (the gateway stopped or died).
"""

from __future__ import annotations

import signal

if __name__ == "__main__":
    # Ctrl-C in a terminal and systemd's stop signal both reach the whole process
    # group; a worker that died of them first would look like a crash to the gateway.
    # Its life is the socket's: it ends when the gateway closes it or exits. Set
    # before importing aiortc (a second or so), so no window is left open.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any

from gateway.logs import setup_logging
from gateway.relay import wire
from gateway.relay.peers import LocalPeers, PeerSettings
from gateway.relay.whep import OfferError
from gateway.streams.hub import Hub

log = logging.getLogger("gateway.relay.worker")

STATS_PERIOD_S = 1.0


class Worker:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.hubs: dict[int, Hub] = {}
        self.peers: LocalPeers | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, msg: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.control(msg))

    def _on_closed(self, sid: str, reason: str) -> None:
        self.send({"op": "closed", "sid": sid, "reason": reason})

    async def run(self) -> None:
        stats = asyncio.create_task(self._report())
        try:
            while True:
                try:
                    kind, body = await wire.read(self.reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the gateway is gone
                if kind == wire.UNIT:
                    feed, au = body
                    hub = self.hubs.get(feed)
                    if hub is not None:
                        hub.publish(au)
                else:
                    await self._control(body)
        finally:
            stats.cancel()
            if self.peers is not None:
                await self.peers.stop()
            for hub in self.hubs.values():
                hub.close()

    async def _control(self, msg: dict[str, Any]) -> None:
        op = msg["op"]
        if op == "config":
            setup_logging(str(msg.get("log_level", "INFO")), bool(msg.get("log_json")))
            self.peers = LocalPeers(_settings(msg["peers"]), self._on_closed)
            await self.peers.start()
            self.send({"op": "ready"})
        elif op == "feed":
            self.hubs[int(msg["feed"])] = Hub(str(msg["key"]))
        elif op == "feed_end":
            hub = self.hubs.pop(int(msg["feed"]), None)
            if hub is not None:
                hub.close()  # its viewers end with "stream ended"
        elif op in ("open", "candidates"):
            # Answering takes a while (ICE gathering): never hold up the feeds for it.
            task = asyncio.create_task(self._request(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif op == "close" and self.peers is not None:
            await self.peers.close(str(msg["sid"]))
        else:
            log.warning("relay worker: unknown request %r", op)

    async def _request(self, msg: dict[str, Any]) -> None:
        rid = msg.get("rid")
        assert self.peers is not None, "config comes first"
        try:
            if msg["op"] == "open":
                hub = self.hubs.get(int(msg["feed"]))
                if hub is None:
                    raise OfferError("the stream ended before the viewer was answered")
                answer = await self.peers.open(
                    str(msg["sid"]),
                    hub,
                    str(msg["camera"]),
                    str(msg["offer"]),
                    source_plid=msg.get("plid"),
                    h265_profile=msg.get("h265"),
                )
                self.send({"op": "answer", "rid": rid, "sdp": answer})
            else:
                cands = [(m, str(line)) for m, line in msg["candidates"]]
                await self.peers.add_candidates(str(msg["sid"]), cands, bool(msg["end"]))
                self.send({"op": "answer", "rid": rid})
        except OfferError as err:
            self.send({"op": "error", "rid": rid, "kind": "offer", "message": str(err)})
        except Exception as err:
            log.exception("relay worker: %s failed", msg["op"])
            self.send({"op": "error", "rid": rid, "kind": "internal", "message": repr(err)})

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            if self.peers is None:
                continue
            figures = {sid: p.stats().as_list() for sid, p in self.peers.peers.items()}
            self.send({"op": "stats", "peers": figures})
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()


def _settings(raw: dict[str, Any]) -> PeerSettings:
    return PeerSettings(
        ice_servers=tuple((tuple(u), n, c) for u, n, c in raw["ice_servers"]),
        addresses=tuple(raw["addresses"]) if raw["addresses"] is not None else None,
        resolve_mdns=bool(raw["resolve_mdns"]),
        burst_bytes_per_s=float(raw["burst_bytes_per_s"]),
        session_timeout_s=float(raw["session_timeout_s"]),
        subscriber_buffer=int(raw["subscriber_buffer"]),
        shared_rtp=bool(raw.get("shared_rtp", True)),
        udp_gso=bool(raw.get("udp_gso", True)),
    )


async def _main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock, limit=wire.MAX_FRAME)
    try:
        await Worker(reader, writer).run()
    finally:
        writer.close()


def main(argv: list[str]) -> int:
    setup_logging("WARNING")  # until the gateway's config says otherwise
    try:
        asyncio.run(_main(int(argv[0])))
    except wire.WireError as err:
        log.error("relay worker: bad frame from the gateway: %s", err)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
