"""``/api/v1/cameras``: the camera inventory, snapshots and PTZ.

Responses carry ``Camera.public()``: never a password. Adding an ONVIF camera
probes it; the answer is 201 whatever the camera said, with its status
(online, offline, unauthorised, error) and reason.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from gateway.api.audit import note, ptz_detail
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cameras import onvif
from gateway.cameras.model import Camera, CameraCreate, CameraPatch, FieldError
from gateway.cameras.registry import (
    CameraConflict,
    CameraNotFound,
    DuplicateCamera,
    Registry,
)

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/cameras", tags=["cameras"])


class PtzIn(BaseModel):
    action: Literal["move", "stop", "goto_preset"]
    pan: float = Field(0.0, ge=-1, le=1, description="Pan velocity, -1 (left) … 1 (right)")
    tilt: float = Field(0.0, ge=-1, le=1, description="Tilt velocity, -1 (down) … 1 (up)")
    zoom: float = Field(0.0, ge=-1, le=1, description="Zoom velocity, -1 (out) … 1 (in)")
    preset: str | None = Field(None, max_length=64, description="Preset token for goto_preset")


def field_error(err: FieldError) -> RequestValidationError:
    """A 422 in the app's usual shape, naming the field."""
    return RequestValidationError(
        [{"loc": ("body", *err.field.split(".")), "msg": err.message, "type": "value_error"}]
    )


def _camera(registry: Registry, camera_id: str, caller: Caller) -> Camera:
    cam = registry.get(camera_id)
    if cam is None or not caller.sees(camera_id):
        raise HTTPException(404, f"unknown camera {camera_id!r} / 未知摄像机")
    return cam


def _with_events(gw: Gateway, out: dict[str, Any]) -> dict[str, Any]:
    """Add the state of the camera's own ONVIF events (PullPoint), when it is read."""
    status = gw.camera_events.status(out["id"])
    if status is not None:
        out["camera_events"] = status
    where = gw.maps.geo_of(out["id"])  # latitude/longitude, set on the e-map page (电子地图)
    out["latitude"], out["longitude"] = where if where else (None, None)
    return out


@router.get("")
def list_cameras(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    return [_with_events(gw, c.public()) for c in gw.registry.list() if caller.sees(c.id)]


@router.get("/{camera_id}")
def get_camera(
    camera_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    return _with_events(gw, _camera(gw.registry, camera_id, caller).public())


@router.post("", status_code=201)
async def create_camera(
    body: CameraCreate,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    try:
        cam = await gw.registry.add(body)
    except DuplicateCamera as err:
        raise HTTPException(409, f"{err} / 设备已存在") from None
    except FieldError as err:
        raise field_error(err) from None
    note(gw, caller, "camera_change", request, camera=cam.id, op="create")
    return cam.public()


@router.patch("/{camera_id}")
async def patch_camera(
    camera_id: str,
    body: CameraPatch,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    registry = gw.registry
    _camera(registry, camera_id, caller)
    # Field names only: a changed password must not reach the log.
    fields = sorted(body.model_dump(exclude_unset=True))
    try:
        cam = (await registry.update(camera_id, body)).public()
        note(gw, caller, "camera_change", request, camera=camera_id, op="update", fields=fields)
        return cam
    except DuplicateCamera as err:
        raise HTTPException(409, str(err)) from None
    except FieldError as err:
        raise field_error(err) from None


@router.delete("/{camera_id}", status_code=204, response_class=Response)
async def delete_camera(
    camera_id: str,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> Response:
    registry = gw.registry
    _camera(registry, camera_id, caller)
    try:
        await registry.remove(camera_id)
    except CameraConflict as err:
        raise HTTPException(409, str(err)) from None
    except CameraNotFound:
        raise HTTPException(404, f"unknown camera {camera_id!r}") from None
    note(gw, caller, "camera_change", request, camera=camera_id, op="delete")
    return Response(status_code=204)


@router.post("/{camera_id}/refresh")
async def refresh_camera(
    camera_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Read the camera's ONVIF device information and profiles again."""
    registry = gw.registry
    _camera(registry, camera_id, caller)
    return (await registry.refresh(camera_id)).public()


@router.get("/{camera_id}/snapshot.jpg", response_class=Response)
async def snapshot(
    camera_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> Response:
    """A JPEG now: from the live stream when it runs, else the camera's snapshot URI."""
    registry = gw.registry
    _camera(registry, camera_id, caller)
    jpeg: bytes | None = None
    problem = "the camera offers no snapshot"
    try:
        jpeg = await gw.streams.snapshot(camera_id)
    except Exception as err:  # fall back to the camera's own snapshot below
        problem = str(err)
        log.debug("snapshot of %s from streams failed: %s", camera_id, err)
    if jpeg is None:
        try:
            jpeg = await registry.snapshot(camera_id)
        except onvif.OnvifError as err:
            problem = str(err)
    if not jpeg:
        raise HTTPException(502, f"no snapshot from {camera_id}: {problem} / 无法抓拍")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def _ptz_call(coro: Any, camera_id: str) -> Any:
    try:
        return await coro
    except ValueError as err:
        raise HTTPException(409, str(err)) from None
    except onvif.AuthError as err:
        raise HTTPException(502, str(err)) from None
    except onvif.OnvifError as err:
        raise HTTPException(502, f"PTZ on {camera_id} failed: {err}") from None


@router.post("/{camera_id}/ptz")
async def ptz(
    camera_id: str,
    body: PtzIn,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """PTZ: continuous ``move`` (velocities), ``stop``, or ``goto_preset``."""
    registry = gw.registry
    _camera(registry, camera_id, caller)
    if body.action == "goto_preset" and not body.preset:
        raise field_error(FieldError("preset", "required for goto_preset"))
    result = await _ptz_call(registry.ptz(camera_id, **body.model_dump()), camera_id)
    note(gw, caller, "ptz", request, camera=camera_id, **ptz_detail(body.model_dump()))
    return result


@router.get("/{camera_id}/presets")
async def presets(
    camera_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> list[dict[str, str]]:
    registry = gw.registry
    _camera(registry, camera_id, caller)
    return await _ptz_call(registry.presets(camera_id), camera_id)
