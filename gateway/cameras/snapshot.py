"""Fetch a camera's JPEG snapshot over HTTP with digest or basic auth."""

from __future__ import annotations

import httpx

from gateway.cameras.errors import AuthError, OnvifError, UnreachableError
from gateway.cameras.urls import host_of

DEFAULT_TIMEOUT = 5.0


async def fetch_snapshot(
    url: str,
    username: str | None,
    password: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = 8 * 1024 * 1024,
) -> bytes:
    """GET a snapshot URI with HTTP digest or basic auth (whichever the camera asks)."""
    auth: httpx.Auth | None = None
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        try:
            for _ in range(2):
                async with client.stream("GET", url, auth=auth) as resp:
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
        except httpx.TimeoutException:
            raise UnreachableError(f"snapshot at {host_of(url)}: timed out") from None
        except httpx.HTTPError as err:
            raise UnreachableError(f"snapshot at {host_of(url)}: {err}") from None
    raise AuthError(f"authentication failed for snapshot at {host_of(url)}")
