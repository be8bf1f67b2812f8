"""URL helpers: rewrite a URL's host, insert and strip credentials (the one place for them)."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, unquote, urlsplit, urlunsplit


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 literal (not a DNS name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def fix_host(url: str, host: str) -> str:
    """Put ``host`` into ``url`` when the URL names an IP other than ``host``.

    Cameras report ``0.0.0.0``, a loopback address, their address behind NAT, or a
    stale DHCP address in XAddrs and stream URIs; the address we reached them at
    is the one that works. DNS names in the URL are kept.
    """
    try:
        parts = urlsplit(url)
        url_host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        return url
    if not url_host or url_host == host or not is_ip(url_host):
        return url
    return with_host(url, host)


def with_host(url: str, host: str, *, keep_userinfo: bool = True) -> str:
    """``url`` with its host replaced by ``host`` (an IPv6 literal gets brackets); the port,
    path, query and (unless ``keep_userinfo`` is false) credentials stay. ValueError on a
    URL whose port does not parse."""
    parts = urlsplit(url)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo and keep_userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``rtsp://host/x`` → ``rtsp://user:pass@host/x``, URL-encoded; replaces existing ones."""
    if not username:
        return url
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    cred = quote(username, safe="")
    if password is not None:
        cred += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{cred}@{hostport}", parts.path, parts.query, parts.fragment))


def strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``scheme://u:p@h/x`` → (``scheme://h/x``, u, p) with u and p URL-decoded."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if colon else None


def host_of(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return "?"
