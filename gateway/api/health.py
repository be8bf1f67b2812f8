"""``/api/v1/health``: open, for load balancers and the Docker healthcheck.

200 when the gateway can do its job, 503 when it cannot (see :mod:`gateway.health`);
the body says why either way.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway.api.deps import get_gateway
from gateway.app import Gateway
from gateway.health import DatabaseProbe, report
from gateway.tlscert import served_fingerprint

router = APIRouter()


def _probe(request: Request, gw: Gateway) -> DatabaseProbe:
    """One probe per app: it remembers the last write, so probes are not hammered."""
    probe: DatabaseProbe | None = getattr(request.app.state, "health_probe", None)
    if probe is None:
        probe = request.app.state.health_probe = DatabaseProbe(gw.db.path)
    return probe


@router.get(
    "/api/v1/health",
    tags=["health"],
    responses={503: {"description": "The gateway cannot do its job; `problems` says why."}},
)
def health(request: Request, gw: Gateway = Depends(get_gateway)) -> JSONResponse:
    # A plain ``def``: FastAPI runs it in a worker thread, off the event loop, since the
    # database probe writes (and may wait for a lock).
    result = report(gw, _probe(request, gw))
    body: dict[str, Any] = result.body
    # Public by nature (any TLS client sees the certificate); children pin it.
    body["tls_fingerprint"] = served_fingerprint(
        gw.settings.server.tls_cert, gw.settings.server.tls_self_signed, gw.data_dir
    )
    return JSONResponse(body, status_code=200 if result.ok else 503)
