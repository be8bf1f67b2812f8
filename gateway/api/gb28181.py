"""``/api/v1/gb28181/upstream``: the GB/T 28181 upper platforms (上级平台), admin only,
each with its live status. Passwords are write-only: responses say ``password_set``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.gb28181.part import Gb28181Part, UpstreamError

router = APIRouter(tags=["gb28181"])
PREFIX = "/api/v1/gb28181/upstream"


NOT_CONFIGURED = "GB/T 28181 is not configured on this gateway: add gb28181: to its config"


def _part(gw: Gateway, missing: int = 404) -> Gb28181Part:
    part = gw.gb28181
    if part is None:
        raise HTTPException(missing, NOT_CONFIGURED)
    return part


def _bad(err: Exception) -> HTTPException:
    return HTTPException(400, str(err))


@router.get(PREFIX)
def list_upstream(
    gw: Gateway = Depends(get_gateway), _caller: Caller = Depends(require("admin"))
) -> dict[str, Any]:
    part = gw.gb28181
    return {"configured": part is not None, "upstream": part.list_all() if part else []}


@router.get(PREFIX + "/{uid}")
def get_upstream(
    uid: str, gw: Gateway = Depends(get_gateway), _caller: Caller = Depends(require("admin"))
) -> dict[str, Any]:
    part = _part(gw)
    if uid not in part.configs:
        raise HTTPException(404, f"no upstream platform {uid!r}")
    return dict(part.describe(uid))


@router.get(PREFIX + "/{uid}/channels")
async def upstream_channels(
    uid: str, gw: Gateway = Depends(get_gateway), _caller: Caller = Depends(require("admin"))
) -> dict[str, Any]:
    """The catalog this platform gets: channel ids, folders and the camera of each."""
    part = _part(gw)
    if uid not in part.configs:
        raise HTTPException(404, f"no upstream platform {uid!r}")
    return {"channels": await asyncio.to_thread(part.channels, uid)}


@router.post(PREFIX, status_code=201)
async def add_upstream(
    response: Response,
    body: dict[str, Any] = Body(...),
    gw: Gateway = Depends(get_gateway),
    _caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    try:
        out = await _part(gw, missing=409).add(body)
    except UpstreamError as err:
        raise _bad(err) from None
    response.headers["Location"] = f"{PREFIX}/{out['id']}"
    return dict(out)


@router.patch(PREFIX + "/{uid}")
async def change_upstream(
    uid: str,
    body: dict[str, Any] = Body(...),
    gw: Gateway = Depends(get_gateway),
    _caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    try:
        return dict(await _part(gw).update(uid, body))
    except KeyError:
        raise HTTPException(404, f"no upstream platform {uid!r}") from None
    except UpstreamError as err:
        raise _bad(err) from None


@router.delete(PREFIX + "/{uid}", status_code=204)
async def delete_upstream(
    uid: str, gw: Gateway = Depends(get_gateway), _caller: Caller = Depends(require("admin"))
) -> Response:
    try:
        await _part(gw).remove(uid)
    except KeyError:
        raise HTTPException(404, f"no upstream platform {uid!r}") from None
    return Response(status_code=204)
