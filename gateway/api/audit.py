"""``/api/v1/audit``: search the audit log (操作日志) and export it as CSV.

Admins see every entry within their subtree; operators and viewers only their own.
Other routers record through :func:`note`, which takes the caller and the request.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.audit import ACTIONS
from gateway.store.audit import AuditEntry, AuditQuery

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
CSV_MAX_ROWS = 100_000
CSV_COLUMNS = ["id", "time", "user", "action", "camera", "ok", "client", "detail"]


def client_of(request: Request | None) -> str:
    return request.client.host if request is not None and request.client else ""


def note(
    gw: Gateway,
    caller: Caller | str,
    action: str,
    request: Request | None = None,
    *,
    camera: str = "",
    ok: bool = True,
    **detail: Any,
) -> None:
    """Record an action of ``caller`` in this gateway's audit log."""
    user = caller if isinstance(caller, str) else caller.name
    gw.audit.record(user, action, camera=camera, client=client_of(request), ok=ok, **detail)


def ptz_detail(command: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry says of a PTZ command (the action, its preset or velocities)."""
    action = str(command.get("action", ""))[:20]
    if action == "goto_preset":
        return {"op": action, "preset": str(command.get("preset", ""))[:64]}
    if action == "move":
        return {"op": action, **{k: command.get(k, 0) for k in ("pan", "tilt", "zoom")}}
    return {"op": action}


def _epoch(ts: datetime | None) -> float | None:
    if ts is None:
        return None
    try:
        return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts).timestamp()
    except (OverflowError, ValueError, OSError):
        raise HTTPException(422, f"time {ts.isoformat()} is out of range / 时间超出范围") from None


def _query(
    caller: Caller,
    user: str | None,
    camera: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    offset: int,
) -> AuditQuery:
    if action and action not in ACTIONS:
        raise HTTPException(422, f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    admin = caller.allows("admin")
    return AuditQuery(
        user=user or None,
        camera=(camera or "").strip("/") or None,
        action=action or None,
        since=_epoch(since),
        until=_epoch(until),
        only_user=None if admin else caller.name,
        scope=caller.scope.strip("/") if admin else "",
        scope_user=caller.name,
        limit=limit,
        offset=offset,
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def _public(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "time": _iso(e.ts),
        "user": e.user,
        "action": e.action,
        "action_label": ACTIONS.get(e.action, e.action),
        "camera": e.camera,
        "ok": e.ok,
        "client": e.client,
        "detail": e.detail,
    }


User = Query(None, max_length=64, description="Who (user name)")
Camera = Query(None, max_length=640, description="Camera id, path or subtree")
Action = Query(None, max_length=40, description="login, view, ptz, alarm_ack, plan_launch, ...")
Since = Query(None, description="ISO time, inclusive")
Until = Query(None, description="ISO time, inclusive")


@router.get("")
def search(
    user: str | None = User,
    camera: str | None = Camera,
    action: str | None = Action,
    since: datetime | None = Since,
    until: datetime | None = Until,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10_000_000),
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    """Audit entries, newest first, within the caller's reach."""
    q = _query(caller, user, camera, action, since, until, limit, offset)
    return {
        "entries": [_public(e) for e in gw.audit.search(q)],
        "actions": ACTIONS,
        "retention_days": gw.settings.audit.retention_days,
    }


def _safe_cell(value: str) -> str:
    # Spreadsheets run cells starting with = + - @ as formulas (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@router.get("/export.csv", response_class=Response)
def export_csv(
    user: str | None = User,
    camera: str | None = Camera,
    action: str | None = Action,
    since: datetime | None = Since,
    until: datetime | None = Until,
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> Response:
    """The same search as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese)."""
    q = _query(caller, user, camera, action, since, until, CSV_MAX_ROWS, 0)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for e in gw.audit.search(q):
        row = _public(e)
        row["detail"] = ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))
        writer.writerow([_safe_cell(str(row[c])) for c in CSV_COLUMNS])
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(
        out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"'},
    )


@router.get("/verify")
def verify(
    caller: Caller = Depends(require("admin")), gw: Gateway = Depends(get_gateway)
) -> dict[str, Any]:
    """Check the log's hash chain: an entry changed or removed in the middle shows here."""
    checked, broken = gw.audit.verify()
    return {"checked": checked, "intact": broken is None, "first_broken_id": broken}
