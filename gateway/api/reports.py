"""``/api/v1/reports/inspection``: daily inspection reports (巡检报告) of this gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.reports.inspection import aggregate

router = APIRouter(tags=["reports"])


class RunRequest(BaseModel):
    date: dt.date | None = Field(None, description="Day to inspect (local); default today so far")


def _part(gw: Gateway) -> Any:
    part = gw.part("reports")
    if part is None:
        raise HTTPException(503, "inspection reports are turned off on this gateway / 未启用巡检")
    return part


def _visible(report: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """A caller scoped to a subtree sees its cameras only, and figures over them."""
    if not caller.scope:
        return report
    rows = [r for r in report["rows"] if caller.sees(r["camera"])]
    out = {**report, **aggregate(report["node"], rows)}
    if "tree" in report:
        out["tree"] = aggregate(
            report["node"], [r for r in report["tree"]["rows"] if caller.sees(r["camera"])]
        )
        out["children"] = [c for c in report["children"] if caller.sees(c["node"])]
    return out


@router.get("/api/v1/reports/inspection")
def get_report(
    node: str | None = Query(
        None, max_length=640, description="Node path below this gateway; this gateway by default"
    ),
    day: dt.date | None = Query(None, alias="date", description="YYYY-MM-DD; latest by default"),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    """A stored report: node figures, then cameras worst first."""
    part = _part(gw)
    key = _key(gw, node)
    report = part.get(day, key)
    if report is None:
        raise HTTPException(
            404, f"no inspection report of {key or gw.path} for {day or 'any day'} / 无巡检报告"
        )
    return _visible(report, caller)


def _key(gw: Gateway, node: str | None) -> str | None:
    return None if node in (None, "", gw.path) else node.strip("/")


@router.get("/api/v1/reports/inspection/days")
def report_days(
    node: str | None = Query(None, max_length=640),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> list[str]:
    """The days with a stored report of the node, newest first."""
    return _part(gw).days(_key(gw, node))


@router.get("/api/v1/reports/inspection/trend")
def report_trend(
    node: str | None = Query(None, max_length=640),
    days: int = Query(30, ge=1, le=400),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> list[dict[str, Any]]:
    """Online rate and completeness of the node's subtree per day, oldest first."""
    if caller.scope:
        raise HTTPException(403, "trends cover whole subtrees: not for scoped users / 无权限")
    return _part(gw).trend(_key(gw, node), days)


@router.post("/api/v1/reports/inspection/run")
async def run_report(
    body: RunRequest | None = None,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Inspect now (today so far, or the given day) and store the report."""
    part = _part(gw)
    try:
        report = await asyncio.to_thread(part.run, body.date if body else None)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    return _visible(report, caller)
