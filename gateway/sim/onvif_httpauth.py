"""HTTP Basic and Digest (RFC 7616, MD5, qop=auth) checks for the simulated camera.

Nonces are stateless: a timestamp plus an HMAC of it under a per-process key,
so any nonce this process issued in the last few minutes verifies, and a forged
or stale one does not.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time

from gateway.digest import response as digest_response

REALM = "gateway-sim"
NONCE_LIFETIME_S = 300.0
_SLACK_S = 1.0  # the wall clock may step back a little between issue and answer
_KEY = os.urandom(32)
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _nonce(now: float | None = None) -> str:
    # Whole milliseconds, rounded down: rounded to nearest, a stamp could lie up to half a
    # millisecond in the future, and a client answering faster than that was refused.
    stamp = str(int((now if now is not None else time.time()) * 1000) / 1000)
    mac = hmac.new(_KEY, stamp.encode(), hashlib.sha256).hexdigest()[:32]
    return base64.b64encode(f"{stamp}:{mac}".encode()).decode()


def _nonce_ok(nonce: str) -> bool:
    try:
        stamp, _, mac = base64.b64decode(nonce, validate=True).decode().partition(":")
        issued = float(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    good = hmac.new(_KEY, stamp.encode(), hashlib.sha256).hexdigest()[:32]
    age = time.time() - issued
    return hmac.compare_digest(mac, good) and -_SLACK_S <= age <= NONCE_LIFETIME_S


def challenge(basic: bool = False) -> dict[str, str | list[str]]:
    """``WWW-Authenticate`` for a 401: Digest first, then Basic when it is offered."""
    values = [f'Digest realm="{REALM}", qop="auth", nonce="{_nonce()}", algorithm=MD5']
    if basic:
        values.append(f'Basic realm="{REALM}"')
    return {"WWW-Authenticate": values}


def check(
    authorization: str | None,
    method: str,
    username: str,
    password: str,
    allow_basic: bool = False,
) -> bool:
    """Whether an ``Authorization`` header proves ``username``/``password``."""
    if not authorization:
        return False
    scheme, _, rest = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic" and allow_basic:
        try:
            user, sep, pw = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and _same(user, username) & _same(pw, password)
    if scheme != "digest":
        return False
    params = {m.group(1).lower(): m.group(2) or m.group(3) or "" for m in _PARAM.finditer(rest)}
    if params.get("algorithm", "MD5").upper() != "MD5" or not _nonce_ok(params.get("nonce", "")):
        return False
    if params.get("qop") and params["qop"] != "auth":
        return False
    want = digest_response(
        username=username,
        realm=params.get("realm", ""),
        password=password,
        method=method,
        uri=params.get("uri", ""),
        nonce=params["nonce"],
        qop=params.get("qop") or None,
        nc=params.get("nc", ""),
        cnonce=params.get("cnonce", ""),
    )
    return (
        _same(params.get("username", ""), username)
        & _same(params.get("response", ""), want)
        & (params.get("realm") == REALM)
    )


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
