"""The FastAPI application on top of a :class:`~gateway.app.Gateway`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from gateway import __version__
from gateway.api.limits import BodyLimitMiddleware
from gateway.app import Gateway
from gateway.maps.service import MAX_IMAGE_BYTES

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _routers() -> list:
    """Every router; the static UI is mounted after them."""
    from gateway.api import (
        audit,
        auth,
        cameras,
        cascade,
        diagnosis,
        discovery,
        events,
        exports,
        gb28181,
        health,
        linkage,
        maps,
        metrics,
        plans,
        prefs,
        recordings,
        reports,
        streams,
        tours,
        whep,
    )

    modules = [health, auth, metrics, cameras, discovery, whep, streams, cascade, linkage]
    modules += [events, recordings, prefs, gb28181, diagnosis, reports, audit, plans, tours]
    modules += [exports]
    modules += [maps]
    return [m.router for m in modules]


def create_app(gw: Gateway, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the HTTP app. With ``manage_lifecycle`` the app starts and stops ``gw``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await gw.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await gw.stop()

    app = FastAPI(
        title="Edge video gateway / 边缘视频网关",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
    )
    app.state.gateway = gw

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": ".".join(str(p) for p in e.get("loc", ())), "msg": e.get("msg", "")}
            for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422, content={"detail": "invalid request / 请求无效", "errors": errors}
        )

    for router in _routers():
        app.include_router(router)
    if gw.settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=gw.settings.server.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["Location", "ETag", "Link"],
        )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=gw.settings.server.max_body_bytes,
        exempt=("/api/v1/cascade/",),
        larger={"/api/v1/maps/image": MAX_IMAGE_BYTES},  # map uploads (bounded there too)
    )
    if WEB_DIR.is_dir():
        app.mount("/", StaticFiles(directory=WEB_DIR, html=True), name="web")
    return app
