"""A small SOAP 1.2 client for the ONVIF services onvif-zeep-async lacks (Media2, PullPoint).

SOAP 1.1 for devices that answer only that (:mod:`gateway.cameras.soap11`).

Each request carries a WS-Security UsernameToken (PasswordDigest) whose Created
stamp is on the camera's clock (``clock_offset_s``, measured by
:class:`gateway.cameras.onvif.OnvifClient`), and WS-Addressing ``Action``/``To``
headers (subscription managers route by ``To``). Devices that refuse the token and
challenge for HTTP Digest get digest credentials from then on. Replies are read
with a size bound and parsed as untrusted XML (no DTD, no entities); faults become
:class:`OnvifError` (:class:`AuthError` for NotAuthorized) naming the camera.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import uuid
from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import DigestAuthMiddleware

from gateway.cameras import soap11, wsd
from gateway.cameras.errors import AuthError, OnvifError, UnreachableError
from gateway.cameras.soap11 import SoapVersion
from gateway.cameras.tls import TlsPolicy, from_aiohttp

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PW_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)
_NONCE_TYPE = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-soap-message-security-1.0#Base64Binary"
)
MAX_REPLY_BYTES = 1024 * 1024


class SoapFault(OnvifError):
    """The device answered with a SOAP fault; ``subcodes`` are local names."""

    def __init__(self, message: str, subcodes: list[str]) -> None:
        super().__init__(message)
        self.subcodes = subcodes


def local(tag: str) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def find(el: Element | None, *names: str) -> Element | None:
    """The first descendant path of children with these local names (any namespace)."""
    for name in names:
        if el is None:
            return None
        el = next((c for c in el if local(c.tag) == name), None)
    return el


def find_all(el: Element | None, name: str) -> list[Element]:
    return [c for c in el if local(c.tag) == name] if el is not None else []


def text(el: Element | None, *names: str) -> str:
    node = find(el, *names)
    return (node.text or "").strip() if node is not None else ""


def security_header(username: str, password: str, clock_offset_s: float) -> str:
    """A WS-Security UsernameToken with PasswordDigest, Created on the device's clock."""
    nonce = os.urandom(16)
    created = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=clock_offset_s)).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    digest = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + password.encode()).digest()
    ).decode()
    return (
        f'<wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}" s:mustUnderstand="1">'
        f"<wsse:UsernameToken><wsse:Username>{escape(username)}</wsse:Username>"
        f'<wsse:Password Type="{_PW_DIGEST}">{digest}</wsse:Password>'
        f'<wsse:Nonce EncodingType="{_NONCE_TYPE}">{base64.b64encode(nonce).decode()}</wsse:Nonce>'
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


class SoapClient:
    """Posts SOAP 1.2 requests to one device; share one per camera, close when done."""

    def __init__(
        self,
        label: str,
        username: str | None,
        password: str | None,
        *,
        clock_offset_s: float = 0.0,
        timeout: float = 5.0,
        version: SoapVersion | None = None,
        tls: TlsPolicy | None = None,
    ) -> None:
        self.label = label
        self.tls = tls or TlsPolicy()  # https URLs: CA-verified or pinned, never blind
        # Shared with the camera's other clients: SOAP 1.1 once it shows it speaks only that.
        self.version = version or SoapVersion()
        self.username = username
        self.password = password
        self.clock_offset_s = clock_offset_s
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._digest: DigestAuthMiddleware | None = None

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _envelope(self, action: str, to: str, body: str) -> bytes:
        security = (
            security_header(self.username, self.password or "", self.clock_offset_s)
            if self.username and self._digest is None
            else ""
        )
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP12}" '
            f'xmlns:wsa="{WSA}"><s:Header>{security}'
            f"<wsa:Action>{escape(action)}</wsa:Action>"
            f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
            f"<wsa:To>{escape(to)}</wsa:To></s:Header><s:Body>{body}</s:Body></s:Envelope>"
        ).encode()

    async def call(
        self, url: str, action: str, body: str, *, timeout: float | None = None
    ) -> Element:
        """POST one request; returns the reply's first Body child. ``timeout`` adds to ours."""
        what = action.rpartition("/")[2] or action
        limit = self.timeout + (timeout or 0.0)
        try:
            async with asyncio.timeout(limit):
                status, challenge, content = await self._post(url, action, body)
                # The first digest challenge, or one to a digest of ours the camera refused
                # (a stale nonce, say): answered afresh, once per call.
                digest = challenge.startswith("digest")
                if status == 401 and digest and self.username:
                    self._digest = DigestAuthMiddleware(
                        self.username, self.password or "", preemptive=True
                    )
                    status, challenge, content = await self._post(url, action, body)
                if not self.version.soap11 and soap11.is_soap11(content):
                    self.version.soap11 = True
                    status, challenge, content = await self._post(url, action, body)
        except TimeoutError:
            raise UnreachableError(
                f"{self.label}: no answer to {what} within {limit:g} s"
            ) from None
        except OSError as err:
            raise UnreachableError(f"cannot reach {self.label}: {err}") from None
        except aiohttp.ClientError as err:
            certificate = from_aiohttp(self.label, err)
            if certificate is not None:
                raise certificate from None
            if isinstance(err, aiohttp.ClientConnectionError):
                raise UnreachableError(f"cannot reach {self.label}: {err}") from None
            raise OnvifError(f"{self.label}: {what} failed: {err}") from None
        if status in (401, 403):
            raise AuthError(f"authentication failed for {self.label} (HTTP {status})")
        try:
            if self.version.soap11:
                content = soap11.reply_as_soap12(content)
            root = wsd.safe_parse(content, MAX_REPLY_BYTES)
        except wsd.WsdRejected as err:
            raise OnvifError(
                f"{self.label}: {what}: rejected reply (HTTP {status}): {err}"
            ) from None
        reply = find(root, "Body")
        first = next(iter(reply), None) if reply is not None else None
        if first is None:
            raise OnvifError(f"{self.label}: {what}: reply without a Body (HTTP {status})")
        if local(first.tag) == "Fault":
            raise _fault(self.label, what, first)
        if status != 200:
            raise OnvifError(f"{self.label}: {what} failed: HTTP {status}")
        return first

    async def _post(self, url: str, action: str, body: str) -> tuple[int, str, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        extra: dict[str, Any] = {"middlewares": (self._digest,)} if self._digest else {}
        if url.lower().startswith("https:"):
            extra["ssl"] = self.tls.aiohttp_ssl()
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
        data = self._envelope(action, url, body)
        if self.version.soap11:
            data, headers = soap11.request_body(data), soap11.request_headers(headers)
        async with self._session.post(url, data=data, headers=headers, **extra) as response:
            if (response.content_length or 0) > MAX_REPLY_BYTES:
                raise OnvifError(f"{self.label}: reply too large ({response.content_length} B)")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise OnvifError(f"{self.label}: reply too large (> {MAX_REPLY_BYTES} B)")
                chunks.append(chunk)
            challenge = response.headers.get("WWW-Authenticate", "").lower()
            return response.status, challenge, b"".join(chunks)


def _fault(label: str, what: str, fault: Element) -> OnvifError:
    subcodes: list[str] = []
    node = find(fault, "Code")
    while node is not None:
        value = text(node, "Value")
        if value:
            subcodes.append(value.rpartition(":")[2])
        node = find(node, "Subcode")
    reason = text(fault, "Reason", "Text") or text(fault, "faultstring")
    if "NotAuthorized" in subcodes:
        return AuthError(f"authentication failed for {label}")
    return SoapFault(f"{label}: {what} failed: {' '.join(subcodes)} {reason}"[:400], subcodes)
