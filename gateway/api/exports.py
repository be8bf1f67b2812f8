"""``/api/v1/exports``: evidence export (录像导出) jobs: create, list, progress, download, delete.

Operators and admins export; an admin sees every export of cameras within its area,
anyone else only their own. Every creation, download and deletion is audited.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gateway.api.audit import client_of, note
from gateway.api.deps import Caller, get_gateway, require
from gateway.api.recordings import _time
from gateway.app import Gateway
from gateway.export.service import Exporter, ExportRefused

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])


class ExportRequest(BaseModel):
    cameras: list[Annotated[str, Field(max_length=640)]] = Field(
        min_length=1, max_length=256, description="Camera paths (local or below, as in the tree)"
    )
    start: str = Field(max_length=64, description="ISO 8601 (naive times are UTC)")
    end: str = Field(max_length=64, description="ISO 8601")
    title: str = Field("", max_length=200, description="Reason / case number (事由)")


def _exporter(gw: Gateway) -> Exporter:
    part = gw.export
    if part is None:
        raise HTTPException(503, "evidence export is not running / 未启用录像导出")
    return part


def _mine(caller: Caller, job: dict[str, Any]) -> bool:
    if caller.allows("admin"):
        return all(caller.sees(c["path"]) for c in job["cameras"])
    return job["user"] == caller.name


def _public(job: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in job.items() if k not in ("scope", "client")}
    ready = job["state"] in ("done", "partial")
    out["download"] = f"/api/v1/exports/{job['id']}/download" if ready else None
    return out


def _job(gw: Gateway, caller: Caller, export_id: str) -> dict[str, Any]:
    job = _exporter(gw).get(export_id[:64])
    if job is None or not _mine(caller, job):
        raise HTTPException(404, "no such export / 无此导出任务")
    return job


@router.post("", status_code=202)
async def create_export(
    body: ExportRequest,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Start an export job; its progress is at ``GET /api/v1/exports/{id}``."""
    exporter = _exporter(gw)
    t0, t1 = _time(body.start, "start"), _time(body.end, "end")
    if t0 is None or t1 is None:
        raise HTTPException(400, "start and end are required / 需要开始和结束时间")
    try:
        job = await exporter.create(caller, body.cameras, t0, t1, body.title, client_of(request))
    except ExportRefused as err:
        await asyncio.to_thread(
            note,
            gw,
            caller,
            "export",
            request,
            ok=False,
            op="create",
            cameras=body.cameras[:20],
            start=body.start,
            end=body.end,
            error=str(err)[:200],
        )
        raise HTTPException(err.status, str(err)) from None
    await asyncio.to_thread(
        note,
        gw,
        caller,
        "export",
        request,
        camera=job["cameras"][0]["path"],
        op="create",
        export=job["id"],
        cameras=[c["path"] for c in job["cameras"]],
        start=job["start"],
        end=job["end"],
        title=body.title or None,
    )
    return _public(job)


@router.get("")
def list_exports(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """The caller's exports (an admin: all in its area), newest first, with the space used."""
    exporter = _exporter(gw)
    jobs = [_public(j) for j in exporter.list() if _mine(caller, j)]
    return {
        "exports": jobs,
        "space": exporter.usage(),
        "limits": exporter.settings.model_dump(),
        "key": exporter.key.describe(),
    }


@router.get("/key")
def signing_key(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, str]:
    """The public key that signs every export's manifest, and its fingerprint."""
    return _exporter(gw).key.describe()


@router.get("/{export_id}")
def get_export(
    export_id: str, gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """One export: state (queued, running, done, partial, empty, failed), progress, cameras."""
    return _public(_job(gw, caller, export_id))


@router.get("/{export_id}/download")
def download_export(
    export_id: str,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> FileResponse:
    """The ZIP of a finished export."""
    job = _job(gw, caller, export_id)
    if job["state"] == "empty":
        raise HTTPException(409, "nothing recorded in the span: no file / 该时段无录像，未生成文件")
    if job["state"] not in ("done", "partial"):
        raise HTTPException(409, f"export is {job['state']}, no file / 导出未完成")
    path = _exporter(gw).zip_path(job["id"])
    if not path.is_file():
        raise HTTPException(410, "the export file is gone / 导出文件已不存在")
    note(gw, caller, "export", request, op="download", export=job["id"], sha256=job.get("sha256"))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(job["created"]))
    return FileResponse(
        path, media_type="application/zip", filename=f"export-{stamp}-{job['id']}.zip"
    )


@router.delete("/{export_id}", status_code=204)
async def delete_export(
    export_id: str,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> None:
    """Delete an export (cancelling it if it runs) and release its retention locks."""
    job = await asyncio.to_thread(_job, gw, caller, export_id)
    await _exporter(gw).delete(job["id"])
    await asyncio.to_thread(
        note,
        gw,
        caller,
        "export",
        request,
        op="delete",
        export=job["id"],
        cameras=[c["path"] for c in job["cameras"]],
        start=job["start"],
        end=job["end"],
    )
