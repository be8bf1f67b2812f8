"""RTP for GB/T 28181 program streams: packetising (RFC 3550) and the three transports.

A PS frame is cut into RTP payloads of at most ``mtu - 12`` bytes; all packets of a
frame carry the frame's 90 kHz timestamp and the last one the marker bit (GB/T
28181-2022 §C: one timestamp per frame). Over UDP each packet is a datagram; over
TCP each is prefixed by its 2-byte length (RFC 4571), either on a connection we open
to the platform (``tcp-connect``, its SDP said ``a=setup:passive``) or on one the
platform opens to us (``tcp-listen``, ``a=setup:active``).

A sink never blocks the sender: ``send`` hands the bytes to the asyncio transport
and the caller checks ``buffered()`` to decide whether to drop (see backend.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from typing import Any

log = logging.getLogger(__name__)

RTP_HEADER = struct.Struct("!BBHII")
DEFAULT_MTU = 1400
# The kernel's share of a TCP send queue: small enough that a platform that stops
# reading shows up in our own (bounded, counted) buffer within seconds.
TCP_SNDBUF = 256 * 1024
CLOSE_GRACE_S = 5.0  # how long unsent bytes may keep a closed connection open


class RtpPacketizer:
    """RTP packets of one stream: fixed SSRC and payload type, running sequence."""

    def __init__(
        self, ssrc: int, payload_type: int = 96, mtu: int = DEFAULT_MTU, seq: int | None = None
    ) -> None:
        if not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"SSRC {ssrc} does not fit 32 bits")
        if not 0 <= payload_type <= 127:
            raise ValueError(f"RTP payload type {payload_type} is not 0-127")
        if not 64 <= mtu <= 65_000:
            raise ValueError(f"MTU {mtu} is not 64-65000")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.max_payload = mtu - RTP_HEADER.size
        self.seq = random.getrandbits(16) if seq is None else seq & 0xFFFF
        self.packets = 0

    def packetize(self, payload: bytes, timestamp: int) -> list[bytes]:
        """``payload`` (one frame) as RTP packets; marker on the last."""
        view = memoryview(payload)
        n = len(payload)
        size = self.max_payload
        ts = timestamp & 0xFFFFFFFF
        out = []
        for pos in range(0, max(n, 1), size):
            last = pos + size >= n
            header = RTP_HEADER.pack(
                0x80, self.payload_type | (0x80 if last else 0), self.seq, ts, self.ssrc
            )
            out.append(header + view[pos : pos + size].tobytes())
            self.seq = (self.seq + 1) & 0xFFFF
        self.packets += len(out)
        return out


def frame_rfc4571(packets: list[bytes]) -> bytes:
    """Packets with their 2-byte big-endian length prefixes, as one write."""
    return b"".join(len(p).to_bytes(2, "big") + p for p in packets)


class SinkError(Exception):
    """The media connection could not be set up; the text says why."""


class RtpSink(asyncio.Protocol, asyncio.DatagramProtocol):
    """Where one stream's RTP packets go (base of the three transports).

    ``lost`` is set to a reason when the peer went away; ``buffered()`` is what our
    side holds unsent (bytes).
    """

    transport_name = ""

    def __init__(self) -> None:
        self.local_host = "0.0.0.0"
        self.local_port = 0
        self.lost: str | None = None
        self.bytes_sent = 0
        self.send_errors = 0
        self._transport: Any = None
        self._connected = asyncio.get_running_loop().create_future()

    async def ready(self, timeout: float) -> None:
        """Wait until packets can flow (only ``tcp-listen`` waits for the platform)."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._connected)
        except TimeoutError:
            raise SinkError(
                f"the platform did not connect to {self.local_host}:{self.local_port} "
                f"within {timeout:g} s"
            ) from None

    def send(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    def buffered(self) -> int:
        t = self._transport
        return t.get_write_buffer_size() if t is not None and not t.is_closing() else 0

    def close(self) -> None:
        t = self._transport
        if t is not None:
            pending = self.buffered()
            t.close()
            if pending:
                # close() flushes what is queued first; a platform that stopped reading
                # would keep those bytes and the socket forever. Give it a moment.
                asyncio.get_running_loop().call_later(CLOSE_GRACE_S, t.abort)
        if not self._connected.done():
            self._connected.cancel()

    # -- asyncio protocol callbacks ------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        if not self._connected.done():
            self._connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = f"connection lost: {exc}" if exc else "the platform closed the connection"

    def data_received(self, data: bytes) -> None:
        pass  # RTCP or anything else a platform sends back is not needed

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        # UDP: ICMP port unreachable until the platform's port opens. Counted, not fatal.
        self.send_errors += 1


class UdpSink(RtpSink):
    transport_name = "udp"

    def send(self, packets: list[bytes]) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        for p in packets:
            t.sendto(p)
            self.bytes_sent += len(p)


class TcpSink(RtpSink):
    transport_name = "tcp"

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SNDBUF)
        super().connection_made(transport)

    def send(self, packets: list[bytes]) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        data = frame_rfc4571(packets)
        t.write(data)
        self.bytes_sent += len(data)


class _ListeningTcpSink(TcpSink):
    """``tcp-listen``: the first connection is the platform's; the port then closes."""

    def __init__(self) -> None:
        super().__init__()
        self.server: asyncio.Server | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        super().close()


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        transport.close()


async def open_sink(
    transport: str, local_host: str, remote_host: str, remote_port: int, timeout: float
) -> RtpSink:
    """A connected (or, for ``tcp-listen``, listening) sink. Raises SinkError."""
    loop = asyncio.get_running_loop()
    sink: RtpSink
    try:
        if transport == "udp":
            sink = UdpSink()
            await loop.create_datagram_endpoint(
                lambda: sink, local_addr=(local_host, 0), remote_addr=(remote_host, remote_port)
            )
        elif transport == "tcp-connect":
            sink = TcpSink()
            local = None if local_host in ("", "0.0.0.0") else (local_host, 0)
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: sink, remote_host, remote_port, local_addr=local
                )
        elif transport == "tcp-listen":
            listening = _ListeningTcpSink()
            taken = False

            def factory() -> asyncio.Protocol:
                nonlocal taken
                if taken:
                    return _Refuse()
                taken = True
                if listening.server is not None:
                    # One platform connection per stream. Not closed right here: asyncio
                    # attaches the new transport to the server after this returns.
                    loop.call_soon(listening.server.close)
                return listening

            listening.server = await loop.create_server(factory, local_host, 0)
            sock = listening.server.sockets[0]
            listening.local_host, listening.local_port = sock.getsockname()[:2]
            if listening.local_host in ("", "0.0.0.0") and remote_host:
                listening.local_host = route_address(remote_host)
            return listening
        else:
            raise SinkError(f"unknown media transport {transport!r}")
    except (OSError, TimeoutError, ValueError) as err:  # ValueError: IPv4 and IPv6 mixed
        reason = "timed out" if isinstance(err, TimeoutError) else str(err)
        if isinstance(err, OSError) and err.strerror:
            reason = err.strerror
        if transport == "tcp-listen":
            raise SinkError(f"cannot listen on {local_host} for the platform: {reason}") from None
        raise SinkError(
            f"cannot reach the platform's media port {remote_host}:{remote_port} over "
            f"{transport}: {reason}"
        ) from None
    sock = sink._transport.get_extra_info("socket")
    sink.local_host, sink.local_port = sock.getsockname()[:2]
    return sink


def route_address(remote_host: str) -> str:
    """Our address on the route to ``remote_host`` (for an SDP c= line), or 0.0.0.0."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((remote_host, 9))
            return str(s.getsockname()[0])
    except OSError:
        return "0.0.0.0"
