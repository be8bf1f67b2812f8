"""``GET /api/v1/streams``: every running hub's figures (ingests and variants)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway

router = APIRouter(tags=["streams"])


@router.get("/api/v1/streams")
def list_streams(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    """Per camera stream: state, fps in, bitrate, subscribers, reconnects, last error.

    Only streams running now are listed; a stream starts when something consumes it.
    """
    return {"streams": [s for s in gw.streams.stats() if caller.sees(s["camera"])]}
