"""``/api/v1/events``: list, fetch, acknowledge, snapshots, and the live SSE stream.

Every transport carries the same JSON (``gateway.events.model.Event``). The SSE
stream names each message after the event type (``event: motion``), sets ``id:`` to
the event id, sends a comment every ``KEEPALIVE_S`` so proxies keep the connection,
and reads through a bounded bus subscription: a client that cannot keep up loses
the oldest events, never the gateway's memory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from gateway.aio import within
from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.events.model import Event
from gateway.store import events as store

log = logging.getLogger(__name__)
router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0
SSE_QUEUE = 256  # events buffered per SSE client before the oldest are dropped
EventId = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Event id")


def _utc(ts: datetime | None) -> datetime | None:
    """Stored times are UTC ISO strings: compare like with like (naive means UTC)."""
    if ts is None:
        return None
    try:
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+02:00 is before year 1 in UTC
        raise HTTPException(422, f"time {ts.isoformat()} is out of range / 时间超出范围") from None


def _visible(gw: Gateway, event_id: str, caller: Caller) -> Event:
    event = store.get(gw.db, event_id)
    if event is None or not caller.sees(event.camera):
        raise HTTPException(404, f"no event {event_id} / 事件不存在")
    return event


@router.get("/api/v1/events")
def list_events(
    camera: str | None = Query(None, max_length=640, description="Camera id or path"),
    type: str | None = Query(None, max_length=40, description="motion, linkage, ..."),
    since: datetime | None = Query(None, description="ISO time; events still open then count"),
    until: datetime | None = Query(None, description="ISO time; events started by then"),
    limit: int = Query(100, ge=1, le=1000),
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> list[dict[str, Any]]:
    """Stored events, newest first."""
    events = store.query(
        gw.db,
        camera=camera,
        type=type,
        since=_utc(since),
        until=_utc(until),
        # A scoped caller sees part of the tree: over-fetch, then filter.
        limit=limit * 4 if caller.scope else limit,
    )
    return [e.model_dump(mode="json") for e in events if caller.sees(e.camera)][:limit]


@router.get("/api/v1/events/stream")
async def stream_events(
    request: Request,
    camera: str | None = Query(None, max_length=640),
    type: str | None = Query(None, max_length=40),
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> StreamingResponse:
    """Server-sent events: every new or updated event, as it is published."""
    sub = gw.bus.subscribe(maxsize=SSE_QUEUE)

    async def messages() -> AsyncIterator[str]:
        try:
            yield "retry: 3000\n: connected\n\n"
            while True:
                try:
                    event = await within(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if (camera and event.camera != camera) or (type and event.type != type):
                    continue
                if not caller.sees(event.camera):
                    continue
                yield _sse(event)
        finally:
            sub.close()

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: Event) -> str:
    # One line of JSON; the fields are stripped of line breaks, which would end them.
    name = "".join(c for c in event.type if c not in "\r\n") or "event"
    ident = "".join(c for c in event.id if c not in "\r\n")
    return f"event: {name}\nid: {ident}\ndata: {store.dumps(event)}\n\n"


@router.get("/api/v1/events/{event_id}")
def get_event(
    event_id: str = EventId,
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    return _visible(gw, event_id, caller).model_dump(mode="json")


@router.get("/api/v1/events/{event_id}/snapshot.jpg", response_class=Response)
def event_snapshot(
    event_id: str = EventId,
    caller: Caller = Depends(require("viewer")),
    gw: Gateway = Depends(get_gateway),
) -> Response:
    """The event's picture with the motion boxes drawn (JPEG)."""
    _visible(gw, event_id, caller)
    jpeg = store.get_snapshot(gw.db, event_id)
    if jpeg is None:
        raise HTTPException(404, f"event {event_id} has no snapshot / 无快照")
    # The snapshot is replaced by the peak picture when the event ends: cache briefly.
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=5"})


@router.post("/api/v1/events/{event_id}/ack")
def acknowledge(
    request: Request,
    event_id: str = EventId,
    caller: Caller = Depends(require("operator")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    """Acknowledge (报警确认) an event; the update goes out on the bus like any other."""
    event = _visible(gw, event_id, caller)
    if not event.acknowledged:
        event.acknowledged = True
        event.data = {
            **event.data,
            "acknowledged_by": caller.name,
            "acknowledged_at": datetime.now(UTC).isoformat(),
        }
        gw.bus.publish(event)
        log.info("event %s acknowledged by %s", event_id, caller.name)
        note(gw, caller, "alarm_ack", request, camera=event.camera, event=event_id, type=event.type)
    return event.model_dump(mode="json")
