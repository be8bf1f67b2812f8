"""The simulated camera's ONVIF side: device, media and PTZ services over SOAP 1.2/HTTP.

``await start(camera)`` binds ``camera.address:camera.http_port`` and serves

- ``POST /onvif/device_service``, ``/onvif/media_service``, ``/onvif/ptz_service``
  (any operation is accepted at any of the three paths; dispatch is by the
  body element's namespace and name, so prefixes do not matter);
- ``GET /snapshot.jpg``: ``camera.snapshot_jpeg()`` behind HTTP Digest or Basic
  auth, unless the camera has ``snapshot_auth = False``.

Authentication follows ONVIF Core: WS-Security UsernameToken (PasswordDigest or
PasswordText), or HTTP Digest. PRE_AUTH operations (GetSystemDateAndTime,
GetServices, GetCapabilities, …) need none. A request with no credentials gets
HTTP 401 with a Digest challenge (the client "intends HTTP Digest"); a wrong
UsernameToken gets a ``env:Sender``/``ter:NotAuthorized`` fault with HTTP 400.

The camera goes dark when ``camera.online`` turns False: the listening socket is
closed and open connections dropped, and it is bound again when the flag turns
True. The flag is polled, and followed at once when ``SimCamera.set_fault`` tells
its listeners; ``await set_online(camera, flag)`` also applies it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from lxml import etree

from gateway.sim import onvif_device, onvif_httpauth, onvif_media, onvif_media2
from gateway.sim.onvif_events import SUBSCRIPTION_PREFIX, EventsService
from gateway.sim.onvif_http import HttpServer, Request, Response
from gateway.sim.onvif_ptz import PtzController
from gateway.sim.onvif_soap import (
    TDS,
    TEV,
    TPTZ,
    TR2,
    TRT,
    SoapFault,
    WsSecurityChecker,
    envelope,
    find_username_token,
    not_authorized,
    parse_request,
    request_version,
)

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
POLL_S = 0.2
SOAP_PATHS = frozenset(
    {
        "/onvif/device_service",
        "/onvif/media_service",
        "/onvif/ptz_service",
        "/onvif/event_service",
        "/onvif/media2_service",
    }
)
SOAP_TYPE = "application/soap+xml; charset=utf-8"
# ONVIF Core access class PRE_AUTH: answered without credentials.
PRE_AUTH = frozenset(
    (TDS, name)
    for name in (
        "GetSystemDateAndTime",
        "GetWsdlUrl",
        "GetServices",
        "GetServiceCapabilities",
        "GetCapabilities",
        "GetHostname",
        "GetEndpointReference",
    )
)

Operation = Callable[[Any, etree._Element], Any]  # markup, or an awaitable of it
_servers: dict[int, OnvifServer] = {}


class OnvifServer(asyncio.AbstractServer):
    """One camera's ONVIF HTTP listener, which follows ``camera.online``."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera
        self.ptz = PtzController(camera) if onvif_device.has_ptz(camera) else None
        self.http = HttpServer(self._handle, MAX_BODY, name=str(camera.id))
        self.auth = WsSecurityChecker()
        self.events = EventsService(camera)
        self.operations: dict[tuple[str, str], Operation] = {}
        for ns, table in (
            (TDS, onvif_device.OPERATIONS),
            (TRT, onvif_media.OPERATIONS),
            (TR2, onvif_media2.OPERATIONS),
            (TPTZ, self.ptz.operations() if self.ptz else {}),
            (TEV, self.events.operations()),
        ):
            self.operations.update({(ns, name): fn for name, fn in table.items()})
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        self._shutdown_task: asyncio.Task | None = None
        self._bind_failed = False
        self._went_offline = False

    async def begin(self) -> None:
        """Bind now if the camera is online (OSError if the port is taken), then follow it."""
        await self.apply_online()
        self._watcher = self._loop.create_task(self._watch())

    async def apply_online(self) -> None:
        """Bind or unbind to match ``camera.online``."""
        async with self._lock:
            if self._closed.is_set():
                return
            online = bool(getattr(self.camera, "online", True))
            if online and not self.http.listening:
                await self.http.listen(
                    self.camera.address, self.camera.http_port, getattr(self.camera, "tls", None)
                )
                if self._went_offline:
                    log.info("sim %s: ONVIF back online", self.camera.id)
            elif not online and self.http.listening:
                await self.http.close()
                self._went_offline = True
                log.info("sim %s: ONVIF offline (listener closed)", self.camera.id)

    async def _watch(self) -> None:
        while not self._closed.is_set():
            await asyncio.sleep(POLL_S)
            await self._apply_quietly()

    def _on_camera_change(self, _camera: Any, what: str) -> None:
        # SimCamera calls its listeners on the runner's loop after set_fault().
        if what == "fault" and not self._closed.is_set():
            self._loop.create_task(self._apply_quietly())

    async def _apply_quietly(self) -> None:
        try:
            await self.apply_online()
            self._bind_failed = False
        except OSError as err:  # e.g. the port was taken while we were offline
            if not self._bind_failed:  # once, not at every poll
                log.warning("sim %s: cannot re-open ONVIF port: %s", self.camera.id, err)
            self._bind_failed = True

    # -- asyncio.AbstractServer -------------------------------------------------
    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        _servers.pop(id(self.camera), None)
        for listener in (self._on_camera_change, self.events.on_camera_change):
            with contextlib.suppress(AttributeError, ValueError):
                self.camera.listeners.remove(listener)
        self.events.close()
        if self._watcher is not None:
            self._watcher.cancel()
        self._shutdown_task = self._loop.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        await self.http.close()
        if self.ptz is not None:
            await self.ptz.close()

    async def wait_closed(self) -> None:
        await self._closed.wait()
        if self._shutdown_task is not None:
            await asyncio.shield(self._shutdown_task)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self.http.listening

    async def start_serving(self) -> None:
        await self.apply_online()

    async def serve_forever(self) -> None:
        await self._closed.wait()

    # -- requests ---------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        if request.path == "/snapshot.jpg":
            if request.method != "GET":
                return Response(405, b"use GET\n", headers={"Allow": "GET"})
            return await self._snapshot(request)
        subscription = request.path.startswith(SUBSCRIPTION_PREFIX)
        if request.path not in SOAP_PATHS and not subscription:
            return Response(404, b"not found\n")
        if request.method != "POST":
            return Response(405, b"use POST\n", headers={"Allow": "POST"})
        version = request_version(request.body, self.camera.soap)
        try:
            return await self._soap(request, version)
        except SoapFault as fault:
            fault.version = version
            log.debug(
                "sim %s: SOAP fault to %s: %s %s",
                self.camera.id,
                request.peer,
                fault.subcode,
                fault,
            )
            return Response(fault.http_status, fault.envelope(), _content_type(version))

    async def _soap(self, request: Request, version: str) -> Response:
        header, op = parse_request(request.body, self.camera.soap)
        qname = etree.QName(op)
        key = (qname.namespace or "", qname.localname)
        handler = self.operations.get(key)
        if request.path.startswith(SUBSCRIPTION_PREFIX):
            # PullMessages, Renew, Unsubscribe: the subscription is named by the address.
            sid = request.path[len(SUBSCRIPTION_PREFIX) :]
            name = qname.localname

            def handler(_cam: Any, element: etree._Element) -> Any:
                return self.events.subscription_call(sid, name, element)

        if handler is None:
            raise SoapFault(
                "Receiver", "ter:ActionNotSupported", f"{qname.localname} is not supported"
            )
        if key not in PRE_AUTH:
            challenge = self._authenticate(request, header, version)
            if challenge is not None:
                return challenge
        result = handler(self.camera, op)
        if inspect.isawaitable(result):
            result = await result
        return Response(200, envelope(result, version), _content_type(version))

    def _authenticate(
        self, request: Request, header: etree._Element | None, version: str = "1.2"
    ) -> Response | None:
        """None when authorised; a 401 challenge when no credentials came at all (or,
        on a camera that refuses WS-Security, no valid HTTP digest)."""
        cam = self.camera
        token = find_username_token(header)
        if token is not None and cam.ws_security:
            self.auth.window_s = cam.auth_window_s
            self.auth.check(token, cam.username, cam.password, cam.clock_offset_s)
            return None
        authorization = request.headers.get("authorization")
        if onvif_httpauth.check(authorization, request.method, cam.username, cam.password):
            return None
        fault = not_authorized("Authentication required")
        fault.version = version
        return Response(
            401, fault.envelope(), _content_type(version), headers=onvif_httpauth.challenge()
        )

    async def _snapshot(self, request: Request) -> Response:
        cam = self.camera
        if getattr(cam, "snapshot_auth", True) and not onvif_httpauth.check(
            request.headers.get("authorization"),
            request.method,
            cam.username,
            cam.password,
            allow_basic=True,
        ):
            return Response(401, b"authentication required\n", headers=_snapshot_challenge())
        try:
            # Rendering and JPEG-encoding a frame costs milliseconds: off the loop.
            jpeg = await asyncio.to_thread(cam.snapshot_jpeg)
        except Exception:
            log.exception("sim %s: snapshot failed", cam.id)
            return Response(503, b"snapshot unavailable\n")
        return Response(200, bytes(jpeg), "image/jpeg", headers={"Cache-Control": "no-store"})


def _content_type(version: str) -> str:
    return SOAP_TYPE if version != "1.1" else "text/xml; charset=utf-8"


def _snapshot_challenge() -> dict[str, str | list[str]]:
    # Offer Digest (preferred) and Basic; clients pick the one they support.
    return onvif_httpauth.challenge(basic=True)


async def start(camera: Any) -> OnvifServer:
    """Serve ``camera``'s ONVIF services and snapshot; returns the server to close."""
    server = OnvifServer(camera)
    await server.begin()
    _servers[id(camera)] = server
    listeners = getattr(camera, "listeners", None)
    if isinstance(listeners, list):
        listeners.append(server._on_camera_change)
        listeners.append(server.events.on_camera_change)
    log.info("sim %s: ONVIF on %s", camera.id, camera.onvif_url())
    return server


async def set_online(camera: Any, online: bool) -> None:
    """Set ``camera.online`` and close or re-open its ONVIF listener now."""
    camera.online = online
    server = _servers.get(id(camera))
    if server is not None:
        await server.apply_online()  # OSError when the port cannot be bound again
