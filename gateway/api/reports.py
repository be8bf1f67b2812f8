"""``/api/v1/reports/inspection``: daily inspection reports (巡检报告) of this gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cascade import access
from gateway.cascade.inspect import Inspections
from gateway.reports.inspection import aggregate
from gateway.reports.service import ReportService
from gateway.reports.week import week_report

router = APIRouter(tags=["reports"])


class RunRequest(BaseModel):
    date: dt.date | None = Field(None, description="Day to inspect (local); default today so far")
    node: str | None = Field(
        None,
        max_length=640,
        description="Node (gateway path below this one) to inspect; this gateway by default",
    )
    subtree: bool = Field(True, description="Also inspect every gateway below the node")


def _part(gw: Gateway) -> ReportService:
    part = gw.reports
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
    period: Literal["day", "week"] = Query(
        "day", description="week: the seven days ending on the date (default today), summed"
    ),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    """A stored report: node figures, then cameras worst first."""
    part = _part(gw)
    key = _key(gw, node)
    if period == "week":
        report = week_report(gw.db, part.node, key or part.node, day or part.today())
    else:
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
    request: Request,
    body: RunRequest | None = None,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Inspect a node now (today so far, or the given day), and with it every gateway below.

    Children are asked through the cascade (``inspect``) and send their rows up like the
    daily reports; ``run`` says which nodes have delivered (poll ``runs/{id}``). The body
    is this gateway's own report when it was inspected.
    """
    part = _part(gw)
    body = body or RunRequest(date=None, node=None, subtree=True)
    key = _key(gw, body.node) or ""
    if caller.scope and not body.node:
        key = caller.scope.strip("/")  # a scoped operator inspects their own subtree
    elif caller.scope and not (key and caller.sees(key)):
        raise HTTPException(403, f"node {key or gw.path!r} is outside your scope / 无权限")
    cascade = gw.cascade
    if cascade is None:  # no cascade part: only this gateway can be inspected
        if key:
            raise HTTPException(404, f"unknown node {key!r} / 未知节点")
        try:
            report = await asyncio.to_thread(part.run, body.date)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return _visible(report, caller)
    try:
        run, report = await cascade.inspections.start_run(key, body.date, body.subtree, caller.name)
    except LookupError as err:
        raise HTTPException(404, str(err)) from None
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    note(gw, caller, "inspection_run", request, node=key or gw.path, run=run.get("id", ""))
    if report is None:
        return {
            "node": key or gw.path,
            "day": body.date.isoformat() if body.date else None,
            "run": run,
        }
    return {**_visible(report, caller), "run": run}


@router.get("/api/v1/reports/inspection/snapshot", response_class=Response)
async def inspection_snapshot(
    camera: str = Query(max_length=640, description="Camera path below this gateway"),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> Response:
    """The fresh snapshot (JPEG) the latest on-demand inspection took of a camera,
    fetched through the cascade from the gateway that owns the camera."""
    camera = camera.strip("/")
    if not caller.sees(camera):
        raise HTTPException(403, f"camera {camera!r} is outside your scope / 无权限")
    try:
        body = await access.inspection_snapshot(gw, camera)
    except access.AccessError as err:
        raise HTTPException(err.status, str(err)) from None
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _inspections(gw: Gateway) -> Inspections:
    cascade = gw.cascade
    if cascade is None:
        raise HTTPException(404, "no inspection runs on this gateway / 无按需巡检")
    return cascade.inspections


@router.get("/api/v1/reports/inspection/runs")
def list_runs(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> list[dict[str, Any]]:
    """The latest on-demand inspections asked at this gateway, newest first."""
    return [r for r in _inspections(gw).recent() if _sees_run(r, caller)]


@router.get("/api/v1/reports/inspection/runs/{run_id}")
def get_run(
    run_id: str, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """Which nodes of an on-demand inspection have delivered their rows, and which not yet."""
    run = _inspections(gw).status(run_id[:64])
    if run is None or not _sees_run(run, caller):
        raise HTTPException(404, f"unknown inspection run {run_id[:64]!r} / 未知巡检任务")
    return run


def _sees_run(run: dict[str, Any], caller: Caller) -> bool:
    return not caller.scope or (bool(run["path"]) and caller.sees(run["path"]))
