"""``/api/v1/plans``: plans (预案) kept and launched by operators.

A plan may only name cameras inside the caller's subtree: creating, changing,
deleting or launching one that names a camera elsewhere is refused (403), and a
scoped caller's list shows only the plans entirely inside its subtree.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError

from gateway.api.audit import client_of, note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cascade.tree import build, find_camera
from gateway.plans.model import PlanIn
from gateway.plans.service import PlanNotFound, Plans
from gateway.store.plans import PlanExists

router = APIRouter(prefix="/api/v1/plans", tags=["plans"])
PlanId = Path(ge=1, le=2**53, description="The plan's id")


def _names(stored: dict[str, Any]) -> list[str]:
    return PlanIn.model_validate(
        {k: stored[k] for k in PlanIn.model_fields if k in stored}
    ).cameras()


def _inside(caller: Caller, cameras: list[str]) -> bool:
    return all(caller.sees(c) for c in cameras)


def _check_scope(caller: Caller, cameras: list[str]) -> None:
    outside = [c for c in cameras if not caller.sees(c)]
    if outside:
        raise HTTPException(
            403,
            f"camera {outside[0]!r} is outside your area ({caller.scope}) / 摄像机超出管辖范围",
        )


def _check_known(gw: Gateway, plan: PlanIn) -> None:
    tree = build(gw)
    unknown = [c for c in plan.cameras() if find_camera(tree, c) is None]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "cameras"),
                    "msg": f"unknown camera {unknown[0]!r} / 未知摄像机",
                    "type": "value_error",
                }
            ]
        )


def _public(plan: dict[str, Any], caller: Caller) -> dict[str, Any]:
    if not caller.allows("operator") and plan.get("notify", {}).get("webhook"):
        # A webhook URL may carry a key: viewers see that there is one, not where.
        plan = {**plan, "notify": {**plan["notify"], "webhook": "(set)"}}
    return plan


def _get(plans: Plans, plan_id: int) -> dict[str, Any]:
    try:
        return plans.get(plan_id)
    except PlanNotFound:
        raise HTTPException(404, f"no plan {plan_id} / 预案不存在") from None


def _visible(plans: Plans, plan_id: int, caller: Caller) -> dict[str, Any]:
    plan = _get(plans, plan_id)
    if not _inside(caller, _names(plan)):
        raise HTTPException(404, f"no plan {plan_id} / 预案不存在")
    return plan


@router.get("")
def list_plans(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    return [_public(p, caller) for p in gw.plans.list() if _inside(caller, _names(p))]


@router.get("/{plan_id}")
def get_plan(
    plan_id: int = PlanId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    return _public(_visible(gw.plans, plan_id, caller), caller)


@router.post("", status_code=201)
def create_plan(
    body: PlanIn,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    _check_scope(caller, body.cameras())
    _check_known(gw, body)
    try:
        plan = gw.plans.add(body, caller.name)
    except PlanExists:
        raise HTTPException(409, f"a plan named {body.name!r} exists / 预案名称已存在") from None
    note(gw, caller, "plan_change", request, op="create", plan=body.name, plan_id=plan["id"])
    return plan


@router.put("/{plan_id}")
def update_plan(
    body: PlanIn,
    request: Request,
    plan_id: int = PlanId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    plans = gw.plans
    _check_scope(caller, _names(_visible(plans, plan_id, caller)))
    _check_scope(caller, body.cameras())
    _check_known(gw, body)
    try:
        plan = plans.update(plan_id, body)
    except PlanExists:
        raise HTTPException(409, f"a plan named {body.name!r} exists / 预案名称已存在") from None
    note(gw, caller, "plan_change", request, op="update", plan=body.name, plan_id=plan_id)
    return plan


@router.delete("/{plan_id}", status_code=204)
def delete_plan(
    request: Request,
    plan_id: int = PlanId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> None:
    plans = gw.plans
    plan = _visible(plans, plan_id, caller)
    plans.delete(plan_id)
    note(gw, caller, "plan_change", request, op="delete", plan=plan["name"], plan_id=plan_id)


@router.post("/{plan_id}/launch")
async def launch_plan(
    request: Request,
    plan_id: int = PlanId,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Run the plan now: wall, presets, recording, message, notification (启动预案)."""
    plans = gw.plans
    plan = _get(plans, plan_id)
    _check_scope(caller, _names(plan))
    return await plans.launch(plan_id, by=caller.name, client=client_of(request))
