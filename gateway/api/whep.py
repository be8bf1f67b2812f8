"""WHEP endpoint: ``/api/v1/streams/{camera_id}/whep`` (draft-ietf-wish-whep).

- ``POST`` (``application/sdp`` offer, ``?variant=low``) → ``201`` with the answer,
  ``Location`` of the session and an ``ETag``. Without ``variant`` (or with
  ``variant=auto``): the main stream when the viewer can take it untouched (H.265
  to a viewer that offered H.265), else the camera's own sub-stream if the viewer
  can take that, else the shared H.264 transcode. ``variant=main`` skips the
  sub-stream (main stream or its transcode). The answer says what was chosen in
  ``X-Stream-Variant`` (``main``, ``sub``, ``h264`` = the transcode, ``low``) and
  ``X-Stream-Codec`` (``h264`` or ``h265``), which the wall's tiles show.
- ``PATCH`` on the session (``application/trickle-ice-sdpfrag``) → ``204``; ICE
  restarts are not supported (``422``, start a new session instead).
- ``DELETE`` on the session → ``200``.
- ``OPTIONS`` → ``204`` with the ICE servers as ``Link`` headers.

The camera id may be a path (``town-a/village-3/cam-01``) once the cascade exists.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.relay.model import RelayError, Session
from gateway.relay.sessions import Relay
from gateway.relay.sfu.relay import SfuRelay, SfuSession
from gateway.relay.whep import OfferError

log = logging.getLogger(__name__)
router = APIRouter(tags=["live"])

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_OFFER_BYTES = 64 * 1024
BASE = "/api/v1/streams/{camera_id:path}/whep"


def _relay(gw: Gateway) -> Relay | SfuRelay:
    # With relay.sfu configured the SFU part answers (same interface), else the relay.
    return gw.sfu if gw.sfu is not None else gw.relay


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes / 请求体过大")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body larger than {limit} bytes / 请求体过大")
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody is left to answer; say so in one line rather than a stack trace.
        raise HTTPException(400, "the client went away before sending its offer") from None
    return b"".join(chunks)


def _text(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, f"{what} is not UTF-8 text") from None


def _link_headers(relay: Relay | SfuRelay, with_credentials: bool) -> list[str]:
    """RFC 9725 §4.6 ``Link`` headers; TURN credentials only for authenticated callers."""
    links = []
    for server in relay.settings.ice_servers:
        for url in server.urls:
            link = f'<{url}>; rel="ice-server"'
            is_turn = url.startswith(("turn:", "turns:"))
            if is_turn and not with_credentials:
                continue
            if is_turn and server.username:
                secret = server.credential.get_secret_value() if server.credential else ""
                link += f'; username="{server.username}"; credential="{secret}"'
                link += '; credential-type="password"'
            links.append(link)
    return links


def _error(err: RelayError | OfferError) -> HTTPException:
    if isinstance(err, OfferError):
        return HTTPException(400, str(err))
    headers = {"Retry-After": f"{err.retry_after:g}"} if err.retry_after else None
    return HTTPException(err.status, str(err), headers=headers)


def _session_url(camera_id: str, session_id: str) -> str:
    return f"/api/v1/streams/{quote(camera_id, safe='/')}/whep/{session_id}"


def _cors_headers() -> dict[str, str]:
    return {
        "Access-Control-Expose-Headers": (
            "Location, ETag, Link, Accept-Patch, X-Stream-Variant, X-Stream-Codec"
        )
    }


@router.options(BASE)
async def whep_options(camera_id: str, gw: Gateway = Depends(get_gateway)) -> Response:
    """ICE servers (Link headers) and what POST accepts; no authentication (CORS preflight)."""
    relay = _relay(gw)
    response = Response(status_code=204)
    response.headers["Accept-Post"] = SDP
    response.headers["Allow"] = "OPTIONS, POST"
    for link in _link_headers(relay, with_credentials=False):
        response.headers.append("Link", link)
    return response


@router.post(BASE, status_code=201, response_class=Response)
async def whep_post(
    camera_id: str,
    request: Request,
    variant: str | None = None,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
):
    """Start watching a camera: send an SDP offer, get the SDP answer."""
    relay = _relay(gw)
    if not caller.sees(camera_id):
        raise HTTPException(404, f"unknown camera {camera_id!r} / 未知摄像机")
    if _media_type(request) != SDP:
        raise HTTPException(415, f"Content-Type must be {SDP} (an SDP offer)")
    if variant in (None, ""):
        variant = "auto"
    elif variant == "main":
        variant = None
    if variant not in (None, "low", "auto"):
        raise HTTPException(
            400, f"unknown variant {variant!r}; omit it or use variant=main, low or auto"
        )
    offer = _text(await _read_body(request, MAX_OFFER_BYTES), "the SDP offer")
    try:
        session, answer = await relay.open(camera_id, offer, variant=variant, caller=caller.name)
    except (RelayError, OfferError) as err:
        log.info("%s: offer refused: %s", camera_id, err)
        raise _error(err) from None
    note(
        gw,
        caller,
        "view",
        request,
        camera=camera_id,
        session=session.id,
        variant=session.variant or "main",
    )
    response = Response(content=answer, status_code=201, media_type=SDP)
    response.headers["Location"] = _session_url(camera_id, session.id)
    response.headers["ETag"] = session.etag
    response.headers["Accept-Patch"] = SDPFRAG
    response.headers["X-Stream-Variant"] = session.variant or "main"
    response.headers["X-Stream-Codec"] = session.codec
    for key, value in _cors_headers().items():
        response.headers[key] = value
    for link in _link_headers(relay, with_credentials=True):
        response.headers.append("Link", link)
    return response


def _session(relay: Relay | SfuRelay, camera_id: str, session_id: str) -> Session | SfuSession:
    session = relay.get(session_id)
    if session is None or session.camera_id != camera_id:
        raise HTTPException(404, "no such WHEP session / 会话不存在")
    return session


@router.patch(BASE + "/{session_id}", status_code=204, response_class=Response)
async def whep_patch(
    camera_id: str,
    session_id: str,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
):
    """Trickle ICE: the viewer's late candidates."""
    relay = _relay(gw)
    session = _session(relay, camera_id, session_id)
    if _media_type(request) != SDPFRAG:
        raise HTTPException(415, f"Content-Type must be {SDPFRAG}")
    if_match = request.headers.get("if-match")
    if if_match and if_match.strip() not in ("*", session.etag):
        raise HTTPException(412, "ETag does not match this session")
    frag = _text(await _read_body(request, MAX_OFFER_BYTES), "the SDP fragment")
    try:
        if gw.sfu is not None:  # takes both kinds of session: direct ones go on to the relay
            await gw.sfu.add_candidates(session, frag)
        elif isinstance(session, Session):  # without the SFU every session is a direct one
            await gw.relay.add_candidates(session, frag)
    except (RelayError, OfferError) as err:
        raise _error(err) from None
    return Response(status_code=204)


@router.delete(BASE + "/{session_id}")
async def whep_delete(
    camera_id: str,
    session_id: str,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    """Stop watching."""
    relay = _relay(gw)
    _session(relay, camera_id, session_id)
    await relay.close(session_id, "viewer left")
    return {"closed": session_id}


@router.get("/api/v1/relay/sessions")
async def relay_sessions(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("operator"))
) -> JSONResponse:
    """Current viewers and the counters of opened, closed and refused sessions."""
    status = _relay(gw).status()
    status["sessions"] = [s for s in status["sessions"] if caller.sees(s["camera"])]
    return JSONResponse(status)
