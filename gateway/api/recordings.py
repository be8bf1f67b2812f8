"""``/api/v1/recordings``: list footage, cut clips, fetch segments, protect footage.

Clients name footage by camera id, times and segment ids only; file paths never come
from the client, so nothing here can reach outside the recordings directory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.recorder.service import Recorder
from gateway.store import events as event_store

log = logging.getLogger(__name__)
router = APIRouter(tags=["recordings"])

MAX_LIST_S = 31 * 86400
SQLITE_MAX_INT = 2**63 - 1  # larger ids overflow the SQLite driver (a 500, not a 404)


def _recorder(gw: Gateway) -> Recorder:
    rec = gw.recorder
    if rec is None:
        raise HTTPException(503, "the recorder is not running / 未启用录像")
    return rec


def _time(value: str | None, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        ts = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise HTTPException(400, f"{name} must be an ISO 8601 time / 时间格式错误") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)  # naive times are UTC
    return ts.timestamp()


def _span(start: str | None, end: str | None, default_s: float) -> tuple[float, float]:
    t1 = _time(end, "end")
    t0 = _time(start, "start")
    if t1 is None:
        t1 = time.time() + 60 if t0 is None else t0 + default_s
    if t0 is None:
        t0 = t1 - default_s
    if t1 <= t0:
        raise HTTPException(400, "end must be after start / 结束时间须晚于开始时间")
    return t0, t1


def _visible(caller: Caller, camera: str) -> None:
    if not camera or len(camera) > 512:
        raise HTTPException(400, "camera id required / 缺少摄像机")
    if not caller.sees(camera):
        raise HTTPException(404, "no such camera / 无此摄像机")


@router.get("/api/v1/recordings")
def list_recordings(
    camera: str = Query(..., description="Camera id"),
    start: str | None = Query(None, description="ISO 8601; default: end minus one day"),
    end: str | None = Query(None, description="ISO 8601; default: now"),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    """Segments, explicit gaps and events of a camera in a time range."""
    _visible(caller, camera)
    t0, t1 = _span(start, end, 86400)
    if t1 - t0 > MAX_LIST_S:
        raise HTTPException(400, "range too long (at most 31 days) / 时间范围过长")
    rec = _recorder(gw)
    gaps = [
        {
            "start": _iso(g["start"]),
            "end": _iso(g["end"]),
            "duration": round(g["end"] - g["start"], 3),
            "reason": g["reason"],
        }
        for g in rec.index.gaps(camera, t0, t1)
    ]
    events = event_store.query(
        gw.db,
        camera=camera,
        since=datetime.fromtimestamp(t0, UTC),
        until=datetime.fromtimestamp(t1, UTC),
        limit=1000,
    )
    return {
        "camera": camera,
        "start": _iso(t0),
        "end": _iso(t1),
        "segments": rec.recordings(camera, t0, t1),
        "gaps": gaps,
        "events": [e.model_dump(mode="json") for e in reversed(events)],
    }


@router.get("/api/v1/recordings/status")
def recorder_status(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """Per-camera recording state, disk use, evictions and crash recovery counts."""
    status = _recorder(gw).status()
    status["cameras"] = [c for c in status["cameras"] if caller.sees(c["camera"])]
    return status


class ProtectRequest(BaseModel):
    event_id: str | None = Field(None, max_length=128, description="Lock this event's footage")
    segment_ids: list[Annotated[int, Field(ge=1, le=SQLITE_MAX_INT)]] | None = Field(
        None, max_length=10000, description="Or these segments"
    )
    locked: bool = Field(True, description="true: protect from eviction; false: release")


@router.post("/api/v1/recordings/protect")
def protect(
    body: ProtectRequest,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Protect (lock) footage from retention and disk eviction, or release it."""
    rec = _recorder(gw)
    if (body.event_id is None) == (body.segment_ids is None):
        raise HTTPException(400, "give event_id or segment_ids / 需指定事件或录像段")
    if body.event_id is not None:
        event = event_store.get(gw.db, body.event_id)
        if event is None or not caller.sees(event.camera):
            raise HTTPException(404, "no such event / 无此事件")
        return rec.protect(event_id=body.event_id, locked=body.locked)
    for sid in body.segment_ids or []:
        seg = rec.index.get(sid)
        if seg is None or not caller.sees(seg["camera"]):
            raise HTTPException(404, f"no such segment {sid} / 无此录像段")
    return rec.protect(segment_ids=body.segment_ids, locked=body.locked)


@router.get("/api/v1/recordings/{camera_id:path}/clip.mp4")
async def clip(
    camera_id: str,
    request: Request,
    start: str | None = Query(None, description="ISO 8601"),
    end: str | None = Query(None, description="ISO 8601 (at most an hour after start)"),
    event: str | None = Query(None, max_length=128, description="Or: an event id"),
    download: bool = Query(False, description="Send as an attachment"),
    codec: Literal["h264"] | None = Query(
        None,
        description="h264: H.265 footage transcoded to H.264 (for browsers without H.265)",
    ),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> FileResponse:
    """An MP4 of the range, starting at the keyframe at or before ``start`` (Range-able).

    ``X-Clip-Codec`` says what the file holds; ``X-Clip-Transcoded: 1`` when it is an
    H.264 copy of H.265 footage (``codec=h264``), made once and cached.
    """
    from gateway.recorder.clip_transcode import TranscodeFailed
    from gateway.recorder.playback import MAX_CLIP_S, ClipRefused, NothingRecorded

    _visible(caller, camera_id)
    rec = _recorder(gw)
    if event is not None:
        ev = await asyncio.to_thread(event_store.get, gw.db, event)
        if ev is None or ev.camera != camera_id:
            raise HTTPException(404, "no such event for this camera / 无此事件")
        pol = gw.settings.recording
        t0 = ev.start.timestamp() - pol.pre_s
        t1 = (ev.end or ev.start).timestamp() + pol.post_s
    else:
        if start is None or end is None:
            raise HTTPException(400, "start and end are required / 需要开始和结束时间")
        t0, t1 = _span(start, end, 0)
    capped = t1 - t0 > MAX_CLIP_S
    try:
        made = await rec.make_clip(camera_id, t0, min(t1, t0 + MAX_CLIP_S), codec)
    except NothingRecorded:
        raise HTTPException(404, "nothing recorded in this range / 该时段无录像") from None
    except ClipRefused as err:
        raise HTTPException(503, f"{err} / 剪辑空间不足") from None
    except TranscodeFailed as err:
        log.warning("%s: %s", camera_id, err)
        raise HTTPException(502, f"{err} / 转码失败; try without codec=h264") from None
    headers = {
        "X-Clip-Start": _iso(made.start),
        "X-Clip-End": _iso(made.end),
        "X-Clip-Codec": made.codec,
        "Cache-Control": "private, max-age=60",
    }
    if made.transcoded:
        headers["X-Clip-Transcoded"] = "1"
    if capped or made.truncated:
        headers["X-Clip-Truncated"] = "1"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(made.start))
    name = f"{camera_id.replace('/', '_')}-{stamp}.mp4"
    if download:  # playback fetches the same clip by ranges: only downloads are logged
        note(
            gw,
            caller,
            "clip_download",
            request,
            camera=camera_id,
            start=_iso(made.start),
            end=_iso(made.end),
        )
    return FileResponse(
        made.path,
        media_type="video/mp4",
        headers=headers,
        filename=name if download else None,
        content_disposition_type="attachment" if download else "inline",
    )


@router.get("/api/v1/recordings/{camera_id:path}/segments/{segment_id}.mp4")
def segment_file(
    camera_id: str,
    segment_id: int = Path(ge=1, le=SQLITE_MAX_INT),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> FileResponse:
    """One segment file as recorded (fragmented MP4)."""
    _visible(caller, camera_id)
    rec = _recorder(gw)
    seg = rec.index.get(segment_id)
    if seg is None or seg["camera"] != camera_id:
        raise HTTPException(404, "no such segment / 无此录像段")
    try:
        path = rec.index.abs(seg["path"])
    except ValueError:
        raise HTTPException(404, "no such segment / 无此录像段") from None
    if not path.is_file():
        raise HTTPException(404, "segment file missing / 录像文件缺失")
    return FileResponse(path, media_type="video/mp4", filename=path.name)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
