"""Where the stream manager learns about local cameras, and where it reports on them.

In order: an injected ``url_resolver(camera_id, profile)`` (tests, benchmarks,
embedding), the camera registry part (``gw.registry``: ``get``, ``stream_url``,
``set_status``; None for a manager running without one), and the static ``cameras:``
of the configuration. Every registry call is guarded: a failing registry means
"unknown" or "no URL", never a crashed ingest.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.config import CameraConfig, Settings

if TYPE_CHECKING:  # only for its type: the streams run without the ONVIF stack loaded
    from gateway.cameras.registry import Registry

log = logging.getLogger(__name__)

UrlResolver = Callable[[str, str], Any]  # (camera_id, profile) -> str | None, or awaitable


class CameraLookup:
    """Camera ids → known or not, stream URLs, status reports (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        url_resolver: UrlResolver | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.url_resolver = url_resolver

    def static(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.settings.cameras if c.id == camera_id), None)

    def knows(self, camera_id: str) -> bool:
        """Whether ``camera_id`` is a local camera (even if its stream is down now)."""
        registry = self.registry
        if registry is not None:
            with contextlib.suppress(Exception):
                if registry.get(camera_id) is not None:
                    return True
        if self.static(camera_id) is not None:
            return True
        if self.url_resolver is not None:
            with contextlib.suppress(Exception):
                return self.url_resolver(camera_id, "main") is not None
        return False

    def effective_profile(self, camera_id: str, profile: str) -> str:
        """A camera without its own stream for ``profile`` serves it from ``main``.

        Opening the same URL twice would cost the camera a second session (decision 1).
        """
        if profile == "main" or "/" in camera_id:
            return profile
        registry = self.registry
        if self.url_resolver is None and registry is not None:
            try:
                mine = registry.stream_url(camera_id, profile)
                if isinstance(mine, str) and mine == registry.stream_url(camera_id, "main"):
                    return "main"
            except Exception:
                log.debug("%s: stream_url failed while choosing a profile", camera_id)
            return profile
        cam = self.static(camera_id)
        if profile == "sub" and cam is not None and cam.sub_rtsp_url is None and cam.rtsp_url:
            return "main"
        return profile

    async def url_for(self, camera_id: str, profile: str) -> str | None:
        """The stream URL now (credentials included: never log it unredacted)."""
        if self.url_resolver is not None:
            url = self.url_resolver(camera_id, profile)
            return await url if inspect.isawaitable(url) else url
        registry = self.registry
        if registry is not None:
            url = registry.stream_url(camera_id, profile)
            if url:
                return url
        cam = self.static(camera_id)
        if cam is not None:
            secret = cam.sub_rtsp_url if profile == "sub" else cam.rtsp_url
            return secret.get_secret_value() if secret is not None else None
        return None

    def report(self, camera_id: str, status: str, reason: str) -> None:
        """``registry.set_status`` if there is a registry (called on the event loop)."""
        registry = self.registry
        if registry is None:
            return
        try:
            registry.set_status(camera_id, status, reason)
        except Exception:
            log.exception("%s: reporting status %s failed", camera_id, status)
