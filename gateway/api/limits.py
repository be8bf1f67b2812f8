"""ASGI guards: request body size limit and security headers on every response."""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyLimitMiddleware:
    """Reject bodies over ``max_bytes`` with 413, whether announced or streamed.

    Paths in ``exempt`` (prefixes) are left alone (e.g. a cascade WebSocket); paths in
    ``larger`` (prefix -> bytes) have a limit of their own (e.g. map image uploads).
    """

    def __init__(
        self,
        app: Any,
        max_bytes: int,
        exempt: tuple[str, ...] = (),
        larger: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        limit = next(
            (n for p, n in self.larger.items() if scope["path"].startswith(p)), self.max_bytes
        )
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope: Scope, receive: Any, send: Any, limit: int) -> None:
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _reject(send, limit)
                return
        seen = 0
        started = False
        rejected = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now, then tell the app the client went away: whatever the
                    # app does with the body (parse it, fail on it) is not sent.
                    rejected = True
                    if not started:
                        await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if not rejected:
                raise


async def _reject(send: Any, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body larger than {limit} bytes / 请求体过大"}, ensure_ascii=False
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
