"""A registry camera's login and the stream URLs that carry it.

Passwords live in ``data_dir/secrets.json`` (:class:`gateway.cameras.secrets.SecretStore`),
never in the camera record, an API response or a log line; a URL built here has them
inserted and must never be logged unredacted.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.cameras import onvif
from gateway.cameras.model import Camera


def login(cam: Camera, secret: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(username, password) from the camera's secrets; the username may be in its record."""
    user = secret.get("username") or (cam.onvif or {}).get("username")
    return user, secret.get("password")


def url_with_login(cam: Camera, profile: str, user: str | None, password: str | None) -> str | None:
    """The RTSP URL of ``profile`` ("main" or "sub", falling back to main), with the login."""
    if cam.onvif:
        chosen = cam.profile(profile) or cam.profile("main")
        uri = (chosen or {}).get("stream_uri")
        if not uri:
            return None
        uri = onvif.fix_host(uri, cam.onvif["host"])
    else:
        uri = (cam.sub_rtsp_url if profile == "sub" else None) or cam.rtsp_url
        if not uri:
            return None
    return onvif.with_credentials(uri, user, password)
