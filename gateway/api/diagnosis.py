"""``/api/v1/diagnosis``: video-quality states per camera, and resetting a reference picture."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.diagnosis.service import DiagnosisService

router = APIRouter(tags=["diagnosis"])


def _part(gw: Gateway) -> DiagnosisService:
    part = gw.diagnosis
    if part is None:
        raise HTTPException(
            503, "video-quality diagnosis is turned off on this gateway / 未启用视频诊断"
        )
    return part


@router.get("/api/v1/diagnosis")
def states(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    """Per camera: the raised states (kind → since, event id), the last sample's scores."""
    return [s for s in _part(gw).status() if caller.sees(s["camera"])]


@router.post("/api/v1/diagnosis/{camera_id}/reference")
def reset_reference(
    camera_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Accept the camera's current view: its next healthy sample becomes the reference."""
    if not caller.sees(camera_id) or not _part(gw).reset_reference(camera_id):
        raise HTTPException(404, f"no diagnosis for camera {camera_id!r} / 该摄像机无诊断数据")
    return {"camera": camera_id, "reference": "reset"}
