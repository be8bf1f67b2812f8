"""A small client of Janus's HTTP API (Janus 1.x): one Janus session, handles on it,
synchronous requests, and a long-poll loop that both keeps the session alive and
delivers the asynchronous events (a plugin's JSEP offer, ``webrtcup``, ``hangup``).

The API secret rides in every request body (and, for the long poll, the query
string: Janus's HTTP transport reads it nowhere else); it never appears in a log line
or an exception message raised from here. aiohttp, unlike httpx, logs no request URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from gateway.aio import within

log = logging.getLogger(__name__)

POLL_WAIT_S = 30.0  # Janus answers a long poll with a keepalive after 30 s


class JanusError(Exception):
    """Janus refused a request (its own error code and reason)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class JanusDown(JanusError):
    """Janus cannot be reached, or did not answer in time."""


Event = dict[str, Any]


class JanusClient:
    """One Janus session over HTTP.

    ``on_event(event)`` receives every asynchronous event that is not the answer to a
    request of ours (``webrtcup``, ``hangup``, ``media``, ``detached``, plugin events);
    ``on_down(reason)`` is called once when the session is lost.
    """

    def __init__(
        self,
        url: str,
        *,
        api_secret: str | None,
        timeout: float,
        on_event: Callable[[Event], None],
        on_down: Callable[[str], None],
    ) -> None:
        self.url = url.rstrip("/")
        self._secret = api_secret
        self.timeout = timeout
        self._on_event = on_event
        self._on_down = on_down
        self.session_id: int | None = None
        self.server: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None  # made in the running loop
        self._pending: dict[str, asyncio.Future[Event]] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self.requests = 0
        self.errors = 0

    @property
    def up(self) -> bool:
        return self.session_id is not None

    # -- plumbing ------------------------------------------------------------------
    def _body(self, janus: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        tx = secrets.token_hex(8)
        body: dict[str, Any] = {"janus": janus, "transaction": tx, **fields}
        if self._secret:
            body["apisecret"] = self._secret
        return tx, body

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(trust_env=False)
        return self._http

    async def _post(self, path: str, body: dict[str, Any]) -> Event:
        self.requests += 1
        try:
            async with self._client().post(
                self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as r:
                reply: Event = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            self.errors += 1
            # The exception text may hold the URL; name only its kind.
            raise JanusDown(
                f"Janus at {self._safe_url()} unreachable ({type(err).__name__})"
            ) from None
        if reply.get("janus") == "error":
            error = reply.get("error") or {}
            raise JanusError(f"Janus: {error.get('reason', 'error')}", int(error.get("code", 0)))
        return reply

    def _safe_url(self) -> str:
        return urlsplit(self.url).netloc.rpartition("@")[2] or "?"

    # -- session -------------------------------------------------------------------
    async def connect(self) -> None:
        """Read the server's info and open our session; raises JanusDown / JanusError."""
        await self.close()  # a session that was given up on (hung Janus) goes first
        _, body = self._body("info")
        self.server = await self._post("", body)
        plugins = self.server.get("plugins") or {}
        if "janus.plugin.streaming" not in plugins:
            raise JanusError("Janus has no streaming plugin (janus.plugin.streaming)")
        _, body = self._body("create")
        reply = await self._post("", body)
        self.session_id = int(reply["data"]["id"])
        self._poll_task = asyncio.create_task(self._poll(), name="janus-poll")
        log.info(
            "Janus %s (%s) session open",
            self.server.get("version_string", "?"),
            self._safe_url(),
        )

    async def close(self) -> None:
        """Destroy our session (its handles go with it) and stop polling."""
        task, self._poll_task = self._poll_task, None
        sid, self.session_id = self.session_id, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if sid is not None:
            _, body = self._body("destroy")
            with contextlib.suppress(JanusError):
                await self._post(f"/{sid}", body)
        self._fail_pending("Janus session closed")

    async def aclose(self) -> None:
        await self.close()
        if self._http is not None:
            await self._http.close()

    def _lost(self, reason: str) -> None:
        if self.session_id is None:
            return
        self.session_id = None
        self._fail_pending(reason)
        log.warning("Janus session lost: %s", reason)
        self._on_down(reason)

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(JanusDown(reason))

    async def _poll(self) -> None:
        params = {"maxev": "10"}
        if self._secret:
            params["apisecret"] = self._secret
        while self.session_id is not None:
            sid = self.session_id
            try:
                async with self._client().get(
                    f"{self.url}/{sid}",
                    params=params,
                    timeout=aiohttp.ClientTimeout(total=POLL_WAIT_S + self.timeout),
                ) as r:
                    events = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                self._lost(f"long poll failed ({type(err).__name__})")
                return
            if isinstance(events, dict):
                events = [events]
            for event in events:
                if event.get("janus") == "error":
                    self._lost(f"Janus: {(event.get('error') or {}).get('reason', 'error')}")
                    return
                self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        fut = self._pending.pop(str(event.get("transaction", "")), None)
        if fut is not None and kind == "event":
            if not fut.done():
                fut.set_result(event)
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("handling Janus event %s failed", kind)

    def _session_path(self) -> str:
        if self.session_id is None:
            raise JanusDown("no Janus session")
        return f"/{self.session_id}"

    # -- handles -------------------------------------------------------------------
    async def attach(self, plugin: str = "janus.plugin.streaming") -> int:
        _, body = self._body("attach", plugin=plugin, opaque_id="gateway")
        reply = await self._post(self._session_path(), body)
        return int(reply["data"]["id"])

    async def detach(self, handle: int) -> None:
        _, body = self._body("detach")
        with contextlib.suppress(JanusError):
            await self._post(f"{self._session_path()}/{handle}", body)

    async def request(self, handle: int, message: dict[str, Any]) -> dict[str, Any]:
        """A synchronous plugin request (``create``, ``destroy``, ``info``): its data."""
        _, body = self._body("message", body=message)
        reply = await self._post(f"{self._session_path()}/{handle}", body)
        data: dict[str, Any] = (reply.get("plugindata") or {}).get("data") or {}
        if "error" in data:
            raise JanusError(f"Janus streaming: {data['error']}", int(data.get("error_code", 0)))
        return data

    async def call(
        self, handle: int, message: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> Event:
        """An asynchronous plugin request (``watch``, ``start``): the event answering it."""
        tx, body = self._body("message", body=message)
        if jsep is not None:
            body["jsep"] = jsep
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._pending[tx] = fut  # before posting: the event may beat the ack
        try:
            await self._post(f"{self._session_path()}/{handle}", body)
            event = await within(fut, self.timeout)
        except TimeoutError:
            raise JanusDown(f"Janus did not answer {message.get('request')!r} in time") from None
        finally:
            self._pending.pop(tx, None)
        data = (event.get("plugindata") or {}).get("data") or {}
        if "error" in data:
            raise JanusError(f"Janus streaming: {data['error']}", int(data.get("error_code", 0)))
        return event

    async def trickle(self, handle: int, candidates: list[dict[str, Any]], end: bool) -> None:
        items: list[dict[str, Any]] = list(candidates)
        if end:
            items.append({"completed": True})
        if not items:
            return
        _, body = self._body("trickle", candidates=items)
        await self._post(f"{self._session_path()}/{handle}", body)
