"""``/api/v1/tours``: tours (轮巡) the video wall cycles through.

Everybody sees the shared tours and their own. Only admins create or change shared
ones; anybody changes their own. A tour naming a camera or node outside the
caller's subtree is refused; a tour with no cameras is a 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.store.tours import TourExists
from gateway.tours import TourIn, Tours

router = APIRouter(prefix="/api/v1/tours", tags=["tours"])
TourId = Path(ge=1, le=2**53, description="The tour's id")


def _user(caller: Caller) -> str:
    if caller.kind != "user":
        raise HTTPException(400, "tours belong to a user, not to a machine token")
    return caller.name


def _check(caller: Caller, tour: TourIn) -> None:
    if tour.shared and not caller.allows("admin"):
        raise HTTPException(403, "only admins share tours / 仅管理员可创建共享轮巡")
    outside = [i for i in tour.items if not caller.sees(i)]
    if outside:
        raise HTTPException(403, f"{outside[0]!r} is outside your area / 超出管辖范围")


def _mine(tours: Tours, tour_id: int, caller: Caller, change: bool) -> dict[str, Any]:
    """The tour if the caller may see it (and, with ``change``, change it)."""
    tour = tours.get(tour_id)
    if tour is None or (tour["owner"] not in (None, caller.name)):
        raise HTTPException(404, f"no tour {tour_id} / 轮巡不存在")
    if change and tour["shared"] and not caller.allows("admin"):
        raise HTTPException(403, "only admins change shared tours / 仅管理员可修改共享轮巡")
    return tour


@router.get("")
def list_tours(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    return [
        t for t in gw.tours.visible_to(_user(caller)) if all(caller.sees(i) for i in t["items"])
    ]


@router.post("", status_code=201)
def create_tour(
    body: TourIn,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    _check(caller, body)
    try:
        tour = gw.tours.add(body, _user(caller))
    except TourExists:
        raise HTTPException(409, f"a tour named {body.name!r} exists / 轮巡名称已存在") from None
    note(gw, caller, "tour_change", request, op="create", tour=body.name, shared=body.shared)
    return tour


@router.put("/{tour_id}")
def update_tour(
    body: TourIn,
    request: Request,
    tour_id: int = TourId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    tours = gw.tours
    old = _mine(tours, tour_id, caller, change=True)
    _check(caller, body)
    try:
        tour = tours.update(tour_id, body, old["owner"] or _user(caller))
    except TourExists:
        raise HTTPException(409, f"a tour named {body.name!r} exists / 轮巡名称已存在") from None
    note(gw, caller, "tour_change", request, op="update", tour=body.name, tour_id=tour_id)
    return tour


@router.delete("/{tour_id}", status_code=204)
def delete_tour(
    request: Request,
    tour_id: int = TourId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> None:
    tours = gw.tours
    tour = _mine(tours, tour_id, caller, change=True)
    tours.delete(tour_id)
    note(gw, caller, "tour_change", request, op="delete", tour=tour["name"], tour_id=tour_id)
