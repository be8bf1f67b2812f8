"""``/api/v1/ui/…``: an operator's own page settings, kept on the gateway.

The video wall layout follows the operator from one workstation to the next (a
command centre has many); it is the operator's own and needs only the viewer role.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, ValidationError

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.store import users as user_store

router = APIRouter(prefix="/api/v1/ui", tags=["ui"])


class Tile(BaseModel):
    ref: str = Field(min_length=1, max_length=512, description="Camera id or path")
    variant: Literal["main", "low"] = "main"


class WallLayout(BaseModel):
    layout: Literal[1, 4, 9, 16] = 4
    tiles: list[Tile | None] = Field(default_factory=list, max_length=16)
    auto_switch: bool = Field(True, description="Linkage switches the wall (else highlights)")


def _user(caller: Caller) -> str:
    if caller.kind != "user":
        raise HTTPException(400, "page settings belong to a user, not to a machine token")
    return caller.name


@router.get("/layout", response_model=WallLayout)
def get_layout(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> WallLayout:
    """The caller's saved wall, or the default (an empty 4-split)."""
    raw = user_store.get_pref(gw.db, _user(caller), "wall")
    try:
        return WallLayout.model_validate_json(raw) if raw else WallLayout()
    except ValidationError:  # saved by an older version with other rules: start afresh
        return WallLayout()


@router.put("/layout", response_model=WallLayout)
def put_layout(
    layout: WallLayout,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> WallLayout:
    user_store.put_pref(gw.db, _user(caller), "wall", layout.model_dump_json())
    return layout
