"""One SIP user agent on one socket: a UDP socket, or a TCP connection we open to the
platform. Both directions share it (GB/T 28181 platforms send their requests back to
the address our REGISTER came from).

Client transactions retransmit over UDP by RFC 3261 timers (Timer A/E from T1
doubling up to T2, Timer B/F = 64·T1); over TCP nothing is retransmitted. Server
transactions answer a retransmitted request with the cached response, and a 2xx to
an INVITE is repeated until its ACK arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from gateway.aio import within
from gateway.gb28181.sip.message import (
    SipMessage,
    SipParseError,
    StreamFramer,
    parse_datagram,
)

log = logging.getLogger(__name__)

Addr = tuple[str, int]
Handler = Callable[[SipMessage, Addr], Awaitable[SipMessage | None]]
USER_AGENT = "edge-gateway-gb28181"


class SipTimeout(Exception):
    """No final response within Timer B/F."""


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0

    @property
    def b(self) -> float:
        return 64 * self.t1


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def make_response(req: SipMessage, status: int, reason: str, to_tag: str = "") -> SipMessage:
    """A response to ``req`` carrying its Via, From, To (plus our tag), Call-ID and CSeq."""
    resp = SipMessage(status=status, reason=reason)
    for via in req.get_all("Via"):
        resp.add("Via", via)
    resp.add("From", req.get("From"))
    to = req.get("To")
    if to_tag and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    resp.add("To", to)
    resp.add("Call-ID", req.call_id)
    resp.add("CSeq", req.get("CSeq"))
    resp.add("User-Agent", USER_AGENT)
    return resp


class SipAgent:
    """Sends requests and waits for their final responses; hands incoming requests to
    ``handler`` (which returns the response, or None for ACK and the like)."""

    def __init__(
        self,
        *,
        transport: Literal["udp", "tcp"],
        remote: Addr,
        handler: Handler,
        local_host: str = "0.0.0.0",
        local_port: int = 0,
        timers: Timers | None = None,
    ) -> None:
        self.transport = transport
        self.remote = remote
        self.handler = handler
        self.local_host = local_host
        self.local_port = local_port
        self.timers = timers or Timers()
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[tuple[str, str], asyncio.Future[SipMessage]] = {}
        self._answered: dict[tuple[str, str], SipMessage | None] = {}
        self._acks: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connect_lock = asyncio.Lock()
        self.via_host = local_host

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.via_host = _reachable_ip(self.local_host, self.remote)
        if self.transport == "udp":
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.local_host, self.local_port)
            )
            self._udp = udp
            self.local_port = udp.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        await self._drop_tcp()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(SipTimeout("agent stopped"))
        self._pending.clear()

    async def _drop_tcp(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _ensure_tcp(self) -> asyncio.StreamWriter:
        async with self._connect_lock:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            reader, writer = await within(
                asyncio.open_connection(
                    self.remote[0],
                    self.remote[1],
                    local_addr=(self.local_host, self.local_port) if self.local_port else None,
                ),
                self.timers.b,
            )
            self._writer = writer
            self.local_port = writer.get_extra_info("sockname")[1]
            self._reader_task = asyncio.create_task(self._read_tcp(reader, writer))
            return writer

    async def _read_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        peer = writer.get_extra_info("peername") or self.remote
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    break
                for msg in framer.feed(data):
                    self._received(msg, (peer[0], peer[1]))
        except SipParseError as err:
            log.warning("gb28181: dropping TCP connection to %s:%s: %s", *peer[:2], err)
        except (ConnectionError, OSError) as err:
            log.info("gb28181: TCP connection to %s:%s lost: %s", peer[0], peer[1], err)
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            for key, fut in list(self._pending.items()):
                if not fut.done():
                    fut.set_exception(SipTimeout("connection closed"))
                    self._pending.pop(key, None)

    # -- sending ---------------------------------------------------------------------

    def via(self, branch: str) -> str:
        proto = "UDP" if self.transport == "udp" else "TCP"
        return f"SIP/2.0/{proto} {self.via_host}:{self.local_port};rport;branch={branch}"

    @property
    def contact_host(self) -> str:
        return f"{self.via_host}:{self.local_port}"

    async def _send(self, msg: SipMessage, addr: Addr) -> None:
        data = msg.to_bytes()
        if self.transport == "udp":
            if self._udp is None:
                raise SipTimeout("agent not started")
            self._udp.sendto(data, addr)
            return
        writer = self._writer if self._writer and not self._writer.is_closing() else None
        if writer is None:
            if not msg.is_request:
                return  # the connection that carried the request is gone
            writer = await self._ensure_tcp()
        writer.write(data)
        await writer.drain()

    async def request(self, msg: SipMessage, timeout: float | None = None) -> SipMessage:
        """Send ``msg`` (Via added here) and return its final response."""
        if self.transport == "tcp":
            await self._ensure_tcp()
        branch = new_branch()
        msg.remove("Via")
        msg.headers.insert(0, ("Via", self.via(branch)))
        if not msg.get("Max-Forwards"):
            msg.add("Max-Forwards", "70")
        if not msg.get("User-Agent"):
            msg.add("User-Agent", USER_AGENT)
        key = (branch, msg.cseq[1])
        fut: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        limit = timeout if timeout is not None else self.timers.b
        try:
            async with asyncio.timeout(limit):
                interval = self.timers.t1
                await self._send(msg, self.remote)
                while True:
                    if self.transport != "udp":
                        return await fut
                    try:
                        return await within(asyncio.shield(fut), interval)
                    except TimeoutError:
                        await self._send(msg, self.remote)
                        interval = min(interval * 2, self.timers.t2)
        except TimeoutError:
            raise SipTimeout(f"no answer to {msg.method} within {limit:.0f} s") from None
        finally:
            self._pending.pop(key, None)

    # -- receiving -------------------------------------------------------------------

    def datagram(self, data: bytes, addr: Addr) -> None:
        if data.strip() == b"":
            return  # keep-alive
        try:
            msg = parse_datagram(data)
        except SipParseError as err:
            log.warning("gb28181: dropped a malformed SIP datagram from %s:%s: %s", *addr, err)
            return
        self._received(msg, addr)

    def _received(self, msg: SipMessage, addr: Addr) -> None:
        if not msg.is_request:
            key = (msg.branch, msg.cseq[1])
            fut = self._pending.get(key)
            if fut is not None and not fut.done() and msg.status >= 200:
                fut.set_result(msg)
            return
        if msg.method == "ACK":
            event = self._acks.pop(msg.call_id, None)
            if event is not None:
                event.set()
        key = _server_key(msg)
        if msg.method != "ACK" and key in self._answered:
            cached = self._answered[key]
            if cached is not None:  # a retransmission: repeat our answer
                self._spawn(self._send(cached, addr))
            return
        if msg.method != "ACK":
            self._answered[key] = None
        self._spawn(self._serve(msg, addr, key))

    async def _serve(self, msg: SipMessage, addr: Addr, key: tuple[str, str]) -> None:
        try:
            resp = await self.handler(msg, addr)
        except Exception:
            log.exception("gb28181: handling %s failed", msg)
            resp = make_response(msg, 500, "Server Internal Error") if msg.method != "ACK" else None
        if resp is None:
            return
        self._answered[key] = resp
        loop = asyncio.get_running_loop()
        loop.call_later(self.timers.b, self._answered.pop, key, None)
        await self._send(resp, addr)
        if msg.method == "INVITE" and 200 <= resp.status < 300 and self.transport == "udp":
            await self._repeat_until_ack(resp, addr)

    async def _repeat_until_ack(self, resp: SipMessage, addr: Addr) -> None:
        event = asyncio.Event()
        self._acks[resp.call_id] = event
        interval = self.timers.t1
        try:
            async with asyncio.timeout(self.timers.b):
                while not event.is_set():
                    with contextlib.suppress(TimeoutError):
                        await within(event.wait(), interval)
                    if not event.is_set():
                        await self._send(resp, addr)
                        interval = min(interval * 2, self.timers.t2)
        except TimeoutError:
            log.warning("gb28181: no ACK for the 200 OK of call %s", resp.call_id)
        finally:
            self._acks.pop(resp.call_id, None)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _server_key(msg: SipMessage) -> tuple[str, str]:
    """The server transaction of a request: its RFC 3261 branch, or for an old-style peer
    without one (RFC 2543), Call-ID and CSeq."""
    branch = msg.branch
    if branch.startswith("z9hG4bK"):
        return branch, msg.method
    return f"{msg.call_id} {msg.get('CSeq')}", msg.method


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, agent: SipAgent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.agent.datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("gb28181: UDP error: %s", exc)


def _reachable_ip(local_host: str, remote: Addr) -> str:
    """The address the platform can reach us at: the bound one, else the route's source."""
    if local_host not in ("0.0.0.0", ""):
        return local_host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(remote)
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"
