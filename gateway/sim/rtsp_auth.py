"""RTSP authentication as IP cameras do it: Basic or Digest (RFC 2617, MD5, no qop)."""

from __future__ import annotations

import base64
import binascii
import hmac

from gateway.digest import response as digest_response

REALM = "GatewaySim"


def challenge(mode: str, nonce: str) -> str:
    """The ``WWW-Authenticate`` value for ``mode`` ("basic" or "digest")."""
    if mode == "digest":
        return f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5'
    return f'Basic realm="{REALM}"'


def verify(
    mode: str, method: str, authorization: str, username: str, password: str, nonce: str
) -> bool:
    """Whether the ``Authorization`` header proves ``username``/``password``."""
    if mode == "basic" and authorization[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, _, pw = raw.partition(b":")
        return _same(user, username.encode()) & _same(pw, password.encode())
    if mode == "digest" and authorization[:7].lower() == "digest ":
        f = _params(authorization[7:])
        want = digest_response(
            username=username,
            realm=REALM,
            password=password,
            method=method,
            uri=f.get("uri", ""),
            nonce=nonce,
        )
        return (
            _same(f.get("username", "").encode(), username.encode())
            & _same(f.get("nonce", "").encode(), nonce.encode())
            & _same(f.get("response", "").lower().encode(), want.encode())
        )
    return False


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def _params(text: str) -> dict[str, str]:
    """``key="value", key=value`` pairs; commas inside quotes are kept."""
    items, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.strip().partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out
