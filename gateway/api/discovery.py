"""``/api/v1/discovery``: start a WS-Discovery scan, read its results, add a found camera."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from gateway.api.audit import note
from gateway.api.cameras import field_error
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cameras.model import FieldError
from gateway.cameras.rediscovery import ScanBusy
from gateway.cameras.registry import DuplicateCamera

router = APIRouter(prefix="/api/v1/discovery", tags=["discovery"])


class ScanIn(BaseModel):
    ranges: list[str] | None = Field(
        None, max_length=64, description="CIDR ranges or addresses (default: the config's)"
    )
    interfaces: list[str] | None = Field(
        None,
        max_length=16,
        description="Multicast interfaces; only those named in discovery.interfaces",
    )


class AddIn(BaseModel):
    endpoint: str | None = Field(None, max_length=512, description="Endpoint reference")
    address: str | None = Field(None, max_length=64, description="Or: the device's address")
    id: str | None = Field(None, max_length=63)
    name: str | None = Field(None, max_length=128)
    username: str | None = Field(None, max_length=128)
    password: str | None = Field(None, max_length=256)
    location: str | None = Field(None, max_length=256)
    division: str | None = Field(None, max_length=256)
    level: str | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _which(self) -> AddIn:
        if not self.endpoint and not self.address:
            raise ValueError("give 'endpoint' or 'address' of a discovered device")
        return self


@router.post("", status_code=202)
async def start_scan(
    body: ScanIn | None = None,
    gw: Gateway = Depends(get_gateway),
    _: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Start a scan; poll ``GET /api/v1/discovery`` for progress and results."""
    body = body or ScanIn()
    try:
        return gw.discovery.start_scan(body.ranges, body.interfaces)
    except ScanBusy as err:
        raise HTTPException(409, f"{err} / 正在搜索") from None
    except FieldError as err:
        raise field_error(err) from None


@router.get("")
async def scan_status(
    gw: Gateway = Depends(get_gateway), _: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """The last scan: ``state`` (idle/running/done/error), progress and ``results``."""
    return gw.discovery.status()


@router.post("/add", status_code=201)
async def add_discovered(
    body: AddIn,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    """Register a discovered device as a camera (probed like any ONVIF add)."""
    fields = body.model_dump(exclude={"endpoint", "address"}, exclude_none=True)
    try:
        cam = await gw.discovery.add(body.endpoint, body.address, **fields)
    except DuplicateCamera as err:
        raise HTTPException(409, f"{err} / 设备已存在") from None
    except FieldError as err:
        raise field_error(err) from None
    except ValueError as err:  # a tag that does not validate (pydantic)
        raise HTTPException(422, str(err)) from None
    note(gw, caller, "camera_change", request, camera=cam.id, op="create", via="discovery")
    return cam.public()
