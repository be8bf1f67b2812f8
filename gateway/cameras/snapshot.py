"""Fetch a camera's JPEG snapshot over HTTP with digest or basic auth."""

from __future__ import annotations

import hashlib
import ssl

import httpx

from gateway.cameras.errors import AuthError, OnvifError, UnreachableError
from gateway.cameras.tls import TlsPolicy, mismatch, untrusted
from gateway.urls import host_of

DEFAULT_TIMEOUT = 5.0


async def fetch_snapshot(
    url: str,
    username: str | None,
    password: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = 8 * 1024 * 1024,
    tls: TlsPolicy | None = None,
) -> bytes:
    """GET a snapshot URI with HTTP digest or basic auth (whichever the camera asks).

    https: checked by ``tls`` as the camera's ONVIF requests are (CA or pinned fingerprint).
    """
    auth: httpx.Auth | None = None
    policy = tls or TlsPolicy()
    pin = policy.pin
    verify: ssl.SSLContext | bool = _unverified() if pin else True
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=verify) as client:
        try:
            for _ in range(2):
                async with client.stream("GET", url, auth=auth) as resp:
                    if pin:
                        _check_pin(resp, url, pin)
                    if resp.status_code == 401 and auth is None and username:
                        challenge = resp.headers.get("www-authenticate", "").lower()
                        auth = (
                            httpx.DigestAuth(username, password or "")
                            if challenge.startswith("digest")
                            else httpx.BasicAuth(username, password or "")
                        )
                        continue
                    if resp.status_code in (401, 403):
                        raise AuthError(f"authentication failed for snapshot at {host_of(url)}")
                    if resp.status_code != 200:
                        raise OnvifError(f"snapshot at {host_of(url)}: HTTP {resp.status_code}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise OnvifError(f"snapshot at {host_of(url)} is too large")
                    if not body.startswith(b"\xff\xd8"):
                        raise OnvifError(f"snapshot at {host_of(url)} is not a JPEG")
                    return bytes(body)
        except httpx.ConnectError as err:
            if "CERTIFICATE_VERIFY_FAILED" in str(err):
                where = f"snapshot at {host_of(url)}"
                raise untrusted(where, host_of(url), None, None, "verify failed") from None
            raise UnreachableError(f"snapshot at {host_of(url)}: {err}") from None
        except httpx.TimeoutException:
            raise UnreachableError(f"snapshot at {host_of(url)}: timed out") from None
        except httpx.HTTPError as err:
            raise UnreachableError(f"snapshot at {host_of(url)}: {err}") from None
    raise AuthError(f"authentication failed for snapshot at {host_of(url)}")


def _unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pinned fingerprint is checked instead
    return context


def _check_pin(resp: httpx.Response, url: str, pin: str) -> None:
    """Refuse a pinned https camera whose connection shows another certificate."""
    if not url.lower().startswith("https:"):
        return
    stream = resp.extensions.get("network_stream")
    sslobj = stream.get_extra_info("ssl_object") if stream is not None else None
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    seen = hashlib.sha256(der).hexdigest() if der else "(none)"
    if seen != pin:
        raise mismatch(f"snapshot at {host_of(url)}", pin, seen)
