"""HTTP/SIP/RTSP digest authentication: the response computation (RFC 2617, RFC 7616 with
MD5, RFC 3261 §22), shared by the clients and the simulated camera's servers.

Only the arithmetic lives here; each caller keeps its own header parsing and policy
(which qop values and algorithms it accepts). The password is only ever an argument.
"""

from __future__ import annotations

import hashlib


def md5_hex(text: str) -> str:
    """MD5 of ``text`` (UTF-8) in lower-case hex, as digest authentication defines it."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def response(
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` value: MD5(HA1:nonce:HA2), or with ``qop`` ("auth")
    MD5(HA1:nonce:nc:cnonce:qop:HA2), where HA1 = MD5(user:realm:password) and
    HA2 = MD5(method:uri)."""
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop:
        return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return md5_hex(f"{ha1}:{nonce}:{ha2}")
