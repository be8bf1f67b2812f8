"""HTTP digest authentication (RFC 2617 / RFC 3261 §22) as SIP clients use it: MD5,
with ``qop=auth`` or without qop. The password is only ever an argument here."""

from __future__ import annotations

import secrets

from gateway.digest import response as digest_response
from gateway.gb28181.sip.message import SipParseError


def parse_challenge(value: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", qop="auth"`` → a dict of lower-case keys."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"unsupported authentication scheme {scheme[:20]!r}")
    out: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            if end < 0:
                raise SipParseError("unterminated quoted string in challenge")
            out[key] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            out[key] = rest[i:end].strip()
            i = end
    if "nonce" not in out or "realm" not in out:
        raise SipParseError("challenge without realm or nonce")
    algorithm = out.get("algorithm", "MD5").upper()
    if algorithm != "MD5":
        raise SipParseError(f"unsupported digest algorithm {algorithm[:20]!r}")
    return out


def authorization(
    challenge: dict[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization header value answering ``challenge``."""
    realm, nonce = challenge["realm"], challenge["nonce"]
    facts = {
        "username": username,
        "realm": realm,
        "password": password,
        "method": method,
        "uri": uri,
        "nonce": nonce,
    }
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
    ]
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        nc_text = f"{nc:08x}"
        response = digest_response(**facts, qop="auth", nc=nc_text, cnonce=cnonce)
        parts += [f'response="{response}"', "qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    elif qops:
        raise SipParseError(f"unsupported qop {challenge['qop'][:20]!r} (only auth)")
    else:
        response = digest_response(**facts)
        parts.append(f'response="{response}"')
    parts.append("algorithm=MD5")
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)
