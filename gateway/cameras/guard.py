"""A bounded, checked HTTP read for onvif-zeep-async services."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import ClientResponse, DigestAuthMiddleware

from gateway.cameras import soap11, wsd
from gateway.cameras.errors import AuthError, OnvifError
from gateway.cameras.soap11 import SoapVersion
from gateway.cameras.tls import TlsPolicy

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 1024 * 1024


def guard_transport(
    service: Any,
    label: str,
    username: str | None = None,
    password: str | None = None,
    version: SoapVersion | None = None,
    tls: TlsPolicy | None = None,
) -> None:
    """Replace the service's HTTP read with a bounded one that checks the XML first.

    The library reads the whole body and lets zeep parse it leniently
    (``recover=True``, ``xml_huge_tree=True``); a hostile or broken camera must get
    a clear rejection instead. Devices that want HTTP digest authentication on the
    SOAP endpoint (the ONVIF core spec allows it beside WS-UsernameToken) answer
    401 with a Digest challenge: the request is repeated with digest credentials,
    and the transport keeps using them. A device that answers in SOAP 1.1 gets SOAP
    1.1 from then on (``version``, shared by the camera's services; see
    :mod:`gateway.cameras.soap11`). HTTPS is checked by ``tls`` (CA-verified or pinned,
    :mod:`gateway.cameras.tls`), never accepted blindly as the library would.
    """
    transport = service.transport
    if getattr(transport, "_gateway_guarded", False):
        return
    digest: list[DigestAuthMiddleware] = []
    mode = version or SoapVersion()
    policy = tls or TlsPolicy()

    async def post(address: str, data: bytes, headers: dict[str, str]) -> ClientResponse:
        extra: dict[str, Any] = {"middlewares": tuple(digest)} if digest else {}
        if address.lower().startswith("https:"):
            extra["ssl"] = policy.aiohttp_ssl()
        return await transport.session.post(
            address, data=data, headers=headers, timeout=transport._client_timeout, **extra
        )

    async def exchange(
        address: str, data: bytes, headers: dict[str, str]
    ) -> tuple[ClientResponse, bytes]:
        if mode.soap11:
            data, headers = soap11.request_body(data), soap11.request_headers(headers)
        response = await post(address, data, headers)
        challenge = response.headers.get("WWW-Authenticate", "").lower()
        if response.status == 401 and not digest and username and challenge.startswith("digest"):
            response.release()
            digest.append(DigestAuthMiddleware(username, password or "", preemptive=True))
            response = await post(address, data, headers)
        try:
            if response.status in (401, 403):
                raise AuthError(f"authentication failed for {label} (HTTP {response.status})")
            if (response.content_length or 0) > MAX_REPLY_BYTES:
                raise OnvifError(f"{label}: rejected reply: oversize ({response.content_length} B)")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise OnvifError(f"{label}: rejected reply: oversize (> {MAX_REPLY_BYTES} B)")
                chunks.append(chunk)
            return response, b"".join(chunks)
        finally:
            response.release()

    async def bounded_post(address: str, message: str | bytes, headers: dict[str, str]):
        headers = dict(headers or {})
        headers.setdefault("Content-Type", 'text/xml; charset="utf-8"')
        data = message.encode("utf-8") if isinstance(message, str) else message
        response, content = await exchange(address, data, headers)
        if not mode.soap11 and soap11.is_soap11(content):
            mode.soap11 = True
            log.info("%s: the device answers only SOAP 1.1; speaking SOAP 1.1 to it", label)
            response, content = await exchange(address, data, headers)
        if content.strip():
            try:
                wsd.safe_parse(content, MAX_REPLY_BYTES)
                if mode.soap11:
                    content = soap11.reply_as_soap12(content)
            except wsd.WsdRejected as err:
                log.warning("%s: rejected a SOAP reply from %s: %s", label, address, err)
                raise OnvifError(f"{label}: rejected reply: {err}") from None
        return response, content

    transport._post_internal = bounded_post
    transport._gateway_guarded = True
