"""A minimal HTTP/1.1 server on asyncio streams, enough for the simulated camera.

It honours ``Content-Length`` and keep-alive, answers ``Expect: 100-continue``
(.NET clients such as ONVIF Device Manager send it), refuses chunked bodies with
411, bodies over the limit with 413 and anything malformed with 400. Handlers
are ``async def handler(request) -> Response`` and never see a broken request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

from gateway.aio import within

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
IDLE_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 30.0


@dataclass
class Request:
    """One parsed HTTP request; header names are lower-case."""

    method: str
    target: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass
class Response:
    """What a handler answers; ``Content-Length`` and ``Connection`` are added."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _encode(resp: Response, keep_alive: bool) -> bytes:
    reason = HTTPStatus(resp.status).phrase if resp.status in HTTPStatus._value2member_map_ else ""
    lines = [f"HTTP/1.1 {resp.status} {reason}"]
    headers: dict[str, str | list[str]] = {
        "Server": "gateway-sim",
        "Content-Type": resp.content_type,
        **resp.headers,
    }
    headers["Content-Length"] = str(len(resp.body))
    headers["Connection"] = "keep-alive" if keep_alive else "close"
    for name, value in headers.items():
        # A list value repeats the header (several WWW-Authenticate challenges).
        lines += (
            [f"{name}: {v}" for v in value] if isinstance(value, list) else [f"{name}: {value}"]
        )
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as err:  # latin-1 decodes anything; kept for clarity
        raise _BadRequest(400, "undecodable request head") from err
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    if not method.isalpha() or not method.isupper() or not target:
        raise _BadRequest(400, "malformed request line")
    if len(lines) > MAX_HEADERS + 1:
        raise _BadRequest(431, "too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise _BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        if key == "content-length" and key in headers and headers[key] != value:
            raise _BadRequest(400, "conflicting Content-Length headers")
        headers[key] = value
    return method, target, version, headers


class HttpServer:
    """Serves one handler on host:port; :meth:`close` also drops open connections."""

    def __init__(self, handler: Handler, max_body: int = 256 * 1024, name: str = "") -> None:
        self.handler = handler
        self.max_body = max_body
        self.name = name
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def listen(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Bind and start serving (SO_REUSEADDR, so a closed port can be re-bound); TLS if given."""
        self._server = await asyncio.start_server(
            self._serve_connection, host, port, limit=MAX_HEAD_BYTES, reuse_address=True, ssl=tls
        )

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def close(self) -> None:
        """Stop listening and drop every open connection, as a camera losing power would."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await within(server.wait_closed(), 2)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            while True:
                keep_alive = await self._one_request(reader, writer, peer_text)
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or idled out; nothing to answer
        except Exception:
            log.exception("sim %s: HTTP connection from %s failed", self.name, peer_text)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> bool:
        try:
            head = await within(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT_S)
        except asyncio.IncompleteReadError as err:
            if err.partial.strip():
                await self._reject(writer, 400, "truncated request head")
            return False
        except asyncio.LimitOverrunError:
            await self._reject(writer, 431, "request head too large")
            return False
        try:
            method, target, version, headers = _parse_head(head[:-4])
            body = await self._read_body(reader, writer, headers)
        except _BadRequest as err:
            await self._reject(writer, err.status, str(err))
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        request = Request(method, target, urlsplit(target).path, version, headers, body, peer)
        try:
            resp = await self.handler(request)
        except Exception:
            log.exception("sim %s: handler failed for %s %s", self.name, method, request.path)
            resp = Response(500, b"internal error\n", close=True)
        keep_alive = keep_alive and not resp.close
        writer.write(_encode(resp, keep_alive))
        await writer.drain()
        return keep_alive

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bytes:
        if "transfer-encoding" in headers:
            raise _BadRequest(411, "chunked bodies are not accepted; send Content-Length")
        raw = headers.get("content-length", "0")
        if not raw.isdigit():
            raise _BadRequest(400, "bad Content-Length")
        if len(raw) > 18 or int(raw) > self.max_body:
            raise _BadRequest(413, f"body over {self.max_body} bytes")
        length = int(raw)
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not length:
            return b""
        return await within(reader.readexactly(length), BODY_TIMEOUT_S)

    async def _reject(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        log.debug("sim %s: rejecting request: %s %s", self.name, status, message)
        writer.write(_encode(Response(status, (message + "\n").encode(), close=True), False))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
