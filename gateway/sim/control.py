"""The simulator's control API: a tiny HTTP/1.1 server for tests and the demo.

- ``GET /cameras`` → list of cameras: the ready line's fields plus ``online``,
  ``fault``, ``motion``, ``rtsp_sessions`` (set up now), ``rtsp_connections`` and
  per stream path ``encoders`` ``{"running", "players", "frames", "errors"}``
- ``GET /cameras/{id}`` → one camera
- ``POST /cameras/{id}/fault`` ``{"mode": "offline"|"online"|"stall"|"garbage"|"normal"}``
- ``POST /cameras/{id}/motion`` ``{"on": true|false}``
- ``POST /cameras/{id}/alarm`` ``{"kind": "tamper"|"input", "on": true|false}`` (ONVIF events)
- ``POST /cameras/{id}/picture`` ``{"mode": "normal"|"cover"|"freeze"|"black"|"blue"|"dark"}``
  (picture faults for the video-quality diagnosis; the stream keeps running)
- ``GET /health`` → ``{"ok": true}``

Plain asyncio rather than a web framework: it starts in milliseconds and has
five routes. One request per connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.aio import within
from gateway.sim.camera import ALARM_KINDS, FAULT_MODES, PICTURE_MODES, SimCamera

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlServer:
    """Serves the control API for ``cameras``; ``describe(camera)`` gives a camera's JSON."""

    def __init__(
        self,
        cameras: list[SimCamera],
        describe: Callable[[SimCamera], dict[str, Any]] | None = None,
        settle: Callable[[SimCamera], Awaitable[None]] | None = None,
    ) -> None:
        self.cameras = {c.id: c for c in cameras}
        self.describe = describe or (lambda c: c.public())
        # awaited after a change, so a reply means listeners are already closed/open
        self.settle = settle
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self.server = await asyncio.start_server(self._on_client, host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, body = 400, {"error": "bad request"}
        try:
            head = await within(reader.readuntil(b"\r\n\r\n"), 10)
            method, path, headers = _parse(head)
            length = int(headers.get("content-length", "0") or 0)
            if not 0 <= length <= MAX_REQUEST:
                raise HttpError(400, "bad Content-Length")
            raw = await within(reader.readexactly(length), 10) if length else b""
            status, body = 200, await self.handle(method, path, raw)
        except HttpError as err:
            status, body = err.status, {"error": str(err)}
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        except ValueError as err:
            status, body = 400, {"error": str(err)}
        data = json.dumps(body, ensure_ascii=False).encode()
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def handle(self, method: str, path: str, raw: bytes) -> Any:
        """Route one request; returns the JSON body or raises HttpError."""
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["health"]:
            return {"ok": True}
        if not parts or parts[0] != "cameras" or len(parts) > 3:
            raise HttpError(404, f"no route {path}")
        if len(parts) == 1:
            if method != "GET":
                raise HttpError(405, "use GET")
            return [self.describe(c) for c in self.cameras.values()]
        cam = self.cameras.get(parts[1])
        if cam is None:
            raise HttpError(404, f"no camera {parts[1]!r}; known: {sorted(self.cameras)}")
        if len(parts) == 2:
            return self.describe(cam)
        if method != "POST":
            raise HttpError(405, "use POST")
        try:
            req = json.loads(raw or b"{}")
        except json.JSONDecodeError as err:
            raise HttpError(400, f"body is not JSON: {err}") from None
        if not isinstance(req, dict):
            raise HttpError(400, "body must be a JSON object")
        if parts[2] == "fault":
            mode = req.get("mode")
            if mode not in FAULT_MODES:
                raise HttpError(400, f"mode must be one of {list(FAULT_MODES)}, got {mode!r}")
            log.info("%s: fault %s", cam.id, mode)
            cam.set_fault(mode)
            if self.settle is not None:
                await self.settle(cam)
            return self.describe(cam)
        if parts[2] == "motion":
            on = req.get("on")
            if not isinstance(on, bool):
                raise HttpError(400, '"on" must be true or false')
            log.info("%s: motion %s", cam.id, "on" if on else "off")
            cam.set_motion(on)
            return self.describe(cam)
        if parts[2] == "alarm":
            kind, on = req.get("kind"), req.get("on")
            if kind not in ALARM_KINDS or not isinstance(on, bool):
                raise HttpError(400, f'"kind" must be one of {list(ALARM_KINDS)}, "on" a boolean')
            log.info("%s: alarm %s %s", cam.id, kind, "on" if on else "off")
            cam.set_alarm(kind, on)
            return self.describe(cam)
        if parts[2] == "picture":
            mode = req.get("mode")
            if mode not in PICTURE_MODES:
                raise HttpError(400, f"mode must be one of {list(PICTURE_MODES)}, got {mode!r}")
            log.info("%s: picture %s", cam.id, mode)
            cam.set_picture(mode)
            return self.describe(cam)
        raise HttpError(404, f"no route {path}")


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], headers
