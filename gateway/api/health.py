"""``/api/v1/health``: open, for load balancers and the Docker healthcheck."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from gateway import __version__
from gateway.api.deps import get_gateway
from gateway.app import Gateway
from gateway.tlscert import served_fingerprint

router = APIRouter()


@router.get("/api/v1/health", tags=["health"])
def health(gw: Gateway = Depends(get_gateway)) -> dict[str, Any]:
    return {
        "status": "ok",
        "version": __version__,
        "id": gw.settings.cascade.id,
        "level": gw.settings.cascade.level,
        "parts": sorted(gw.parts),
        # Public by nature (any TLS client sees the certificate); children pin it.
        "tls_fingerprint": served_fingerprint(
            gw.settings.server.tls_cert, gw.settings.server.tls_self_signed, gw.data_dir
        ),
    }
