"""The one JSON shape of an event, for every transport (SSE, WebSocket, uplink, MQTT).

It lives at the bottom, in ``store``, because the event tables persist it; everything above imports
it as ``gateway.events.model``.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


def new_event_id() -> str:
    """A sortable unique id: milliseconds since the epoch, then random hex."""
    return f"{int(time.time() * 1000):013x}{os.urandom(6).hex()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Something that happened to a camera or a gateway.

    ``camera`` is the camera's id as seen at this gateway: a local id (``cam-01``)
    or, for cameras below a child, the path relative to this gateway
    (``village-3/cam-01``). ``source`` is the path of the gateway that raised it.
    An event is published again with the same ``id`` when it changes (e.g. a
    motion event gets its ``end``); consumers treat the id as the key.
    """

    id: str = Field(default_factory=new_event_id)
    camera: str = ""
    type: str = Field(description="motion, camera_offline, camera_online, linkage, ...")
    start: datetime = Field(default_factory=utcnow)
    end: datetime | None = None
    score: float | None = None
    zones: list[str] = Field(default_factory=list)
    boxes: list[list[float]] = Field(
        default_factory=list, description="[x, y, w, h] in 0..1 picture coordinates"
    )
    snapshot_url: str | None = None
    source: str = ""
    acknowledged: bool = False
    data: dict[str, Any] = Field(default_factory=dict)
