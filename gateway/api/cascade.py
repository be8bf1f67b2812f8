"""Cascade API: the children's WebSocket, the merged tree, remote cameras, children tokens.

``/api/v1/cascade/ws`` is where children dial in (token auth, children tokens only).
``/api/v1/tree`` is the device tree; ``/api/v1/tree/cameras/{path}`` and
``/api/v1/tree/recordings/{path}`` reach any camera below this gateway by path.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from gateway.api.audit import note, ptz_detail
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cascade import access
from gateway.cascade.access import AccessError
from gateway.cascade.protocol import PATH_PATTERN
from gateway.cascade.tree import build, find_camera, to_api
from gateway.config import ID_PATTERN
from gateway.events.model import Event
from gateway.store import children as child_store
from gateway.store import events as event_store

log = logging.getLogger(__name__)
router = APIRouter(tags=["cascade"])


def _path(caller: Caller, path: str) -> str:
    if not re.fullmatch(PATH_PATTERN, path):
        raise HTTPException(400, f"not a camera path: {path[:100]!r}")
    if not caller.sees(path):
        raise HTTPException(404, f"unknown camera {path!r} / 未知摄像机")
    return path


def _http(err: AccessError) -> HTTPException:
    return HTTPException(err.status, str(err))


# -- children connect here ----------------------------------------------------------


@router.websocket("/api/v1/cascade/ws")
async def cascade_ws(ws: WebSocket) -> None:
    gw: Gateway = ws.app.state.gateway
    header = ws.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    name = await asyncio.to_thread(child_store.verify, gw.db, token) if token else None
    if name is None:
        log.warning(
            "cascade connection from %s refused: bad or revoked token",
            ws.client.host if ws.client else "?",
        )
        await ws.close(code=1008)  # before accept: the client sees HTTP 403
        return
    await ws.accept()
    await gw.cascade.downlink.serve(ws, name)


# -- the tree -------------------------------------------------------------------------


@router.get("/api/v1/tree", response_model=dict[str, Any])
def tree(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> Response:
    """The device tree below this gateway with online/offline status and camera counts."""
    # Rendered straight to JSON: FastAPI's generic encoder took ~10x as long as the tree
    # itself for a county's 2,000 cameras (docs/benchmarks.md, city scale).
    return JSONResponse(to_api(build(gw), caller.sees if caller.scope else None))


@router.get("/api/v1/tree/cameras/{path:path}/snapshot.jpg")
async def tree_snapshot(
    path: str, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> Response:
    try:
        body = await access.snapshot(gw, _path(caller, path))
    except AccessError as err:
        raise _http(err) from None
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/api/v1/tree/cameras/{path:path}/presets")
async def tree_presets(
    path: str, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    """PTZ presets of a camera here or below (预置位)."""
    try:
        return await access.presets(gw, _path(caller, path))
    except AccessError as err:
        raise _http(err) from None


@router.post("/api/v1/tree/cameras/{path:path}/ptz")
async def tree_ptz(
    path: str,
    request: Request,
    command: dict[str, Any] = Body(..., description="PTZ command, passed to the camera's gateway"),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    try:
        result = await access.ptz(gw, _path(caller, path), command)
    except AccessError as err:
        raise _http(err) from None
    note(gw, caller, "ptz", request, camera=path, **ptz_detail(command))
    return result


@router.get("/api/v1/tree/cameras/{path:path}")
def tree_camera(
    path: str, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """One camera anywhere below this gateway, as the tree knows it."""
    cam = find_camera(build(gw), _path(caller, path))
    if cam is None:
        raise HTTPException(404, f"unknown camera {path!r} / 未知摄像机")
    return cam.model_dump()


@router.get("/api/v1/tree/recordings/{path:path}/clip.mp4")
async def tree_clip(
    path: str,
    request: Request,
    start: str = Query(..., description="ISO 8601 start"),
    end: str = Query(..., description="ISO 8601 end"),
    codec: Literal["h264"] | None = Query(
        None, description="h264: H.265 footage transcoded where it is recorded"
    ),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> StreamingResponse:
    params = {"start": start, "end": end, **({"codec": codec} if codec else {})}
    body = access.clip(gw, _path(caller, path), params)
    try:
        first = await body.__anext__()  # errors become HTTP errors before the 200 goes out
    except StopAsyncIteration:
        first = b""
    except AccessError as err:
        raise _http(err) from None

    async def chunks() -> Any:
        if first:
            yield first
        async for chunk in body:
            yield chunk

    name = path.replace("/", "_")
    note(gw, caller, "clip_download", request, camera=path, start=start[:40], end=end[:40])
    return StreamingResponse(
        chunks(),
        media_type="video/mp4",
        headers={"Content-Disposition": f'attachment; filename="{name}.mp4"'},
    )


@router.get("/api/v1/tree/recordings/{path:path}")
async def tree_recordings(
    path: str,
    start: str | None = Query(None),
    end: str | None = Query(None),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    try:
        items = await access.recordings(gw, _path(caller, path), {"start": start, "end": end})
    except AccessError as err:
        raise _http(err) from None
    return {"camera": path, "recordings": items}


# -- cascade state and the test/maintenance switch -------------------------------------


@router.get("/api/v1/cascade")
def cascade_stats(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("operator"))
) -> dict[str, Any]:
    """Uplink state, children sessions, open remote streams and their bytes."""
    return gw.cascade.stats()


class UplinkSwitch(BaseModel):
    enabled: bool = Field(description="False cuts the uplink until set True again")


@router.post("/api/v1/cascade/uplink")
def uplink_switch(
    body: UplinkSwitch,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    uplink = gw.cascade.uplink
    if uplink is None:
        raise HTTPException(409, "this gateway has no parent (cascade.parent is not set)")
    uplink.set_enabled(body.enabled)
    log.warning("uplink %s by %s", "restored" if body.enabled else "cut", caller.name)
    note(gw, caller, "settings_change", request, what="uplink", enabled=body.enabled)
    return uplink.stats()


# -- children management (admin) ---------------------------------------------------------


class NewChild(BaseModel):
    name: str = Field(pattern=ID_PATTERN, description="The child's cascade id")


@router.get("/api/v1/children")
def list_children(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("admin"))
) -> list[dict[str, Any]]:
    links = gw.cascade.downlink.links
    return [
        {
            "name": c.name,
            "created": c.created,
            "revoked": c.revoked,
            "last_seen": c.last_seen,
            "online": bool(c.name in links and links[c.name].online),
        }
        for c in child_store.list_all(gw.db)
    ]


@router.post("/api/v1/children", status_code=201)
async def add_child(
    body: NewChild,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, str]:
    """Issue a token for a child; it is shown in this answer only."""
    try:
        token = await asyncio.to_thread(child_store.add, gw.db, body.name)
    except child_store.ChildExists:
        raise HTTPException(409, f"child {body.name} exists; revoke it first") from None
    log.info("child %s token issued by %s", body.name, caller.name)
    note(gw, caller, "settings_change", request, what="child_add", child=body.name)
    await gw.cascade.downlink.sync_children()
    return {"name": body.name, "token": token}


@router.delete("/api/v1/children/{name}")
async def revoke_child(
    name: str,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    if not await asyncio.to_thread(child_store.revoke, gw.db, name):
        raise HTTPException(404, f"no active child named {name!r}")
    await gw.cascade.downlink.sync_children()
    log.warning("child %s revoked by %s", name, caller.name)
    note(gw, caller, "settings_change", request, what="child_revoke", child=name)
    return {"name": name, "revoked": True}


# -- publishing an event by hand (integration and tests) ---------------------------------


class NewEvent(BaseModel):
    camera: str = Field("", max_length=640)
    type: str = Field("custom", pattern=r"^[a-z0-9_.-]{1,40}$")
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    zones: list[str] = Field(default_factory=list, max_length=32)
    score: float | None = None
    end: datetime | None = Field(None, description="Set when publishing the event's end")
    data: dict[str, Any] = Field(default_factory=dict)


@router.post("/api/v1/events", status_code=201)
def publish_event(
    body: NewEvent, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("admin"))
) -> dict[str, Any]:
    """Publish a custom event on this gateway's bus (it flows to SSE, linkage and upward)."""
    if body.type == "linkage":
        raise HTTPException(400, "linkage events are raised by linkage rules only")
    fields: dict[str, Any] = {
        "camera": body.camera,
        "type": body.type,
        "zones": body.zones,
        "score": body.score,
        "data": {**body.data, "published_by": caller.name},
    }
    if body.id:
        fields["id"] = body.id
        previous = event_store.get(gw.db, body.id)
        if previous is not None:  # an update keeps the event's start
            fields["start"] = previous.start
    if body.end is not None:
        fields["end"] = body.end if body.end.tzinfo else body.end.replace(tzinfo=UTC)
    event = gw.bus.publish(Event(**fields))
    return event.model_dump(mode="json")
