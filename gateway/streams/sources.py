"""Which source feeds a camera stream: the camera's RTSP, a transcoder, or a resolver.

A local camera (``cam-01``) is read over RTSP from the URL :class:`CameraLookup` gives;
a variant (``@low``) is transcoded from its base stream's hub; a remote camera
(``town-a/cam-01``) comes from a resolver registered by the cascade.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import Settings
from gateway.streams.cameras import CameraLookup
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource
from gateway.streams.source import StreamSource
from gateway.streams.transcode import TranscodeSource

Resolver = Callable[..., "StreamSource | None"]  # (camera, profile[, variant])
StatusReport = Callable[[str, str, str, str], None]  # (camera, profile, status, reason)


class UnknownCamera(KeyError):
    """No local camera, static camera or resolver knows this id."""

    def __str__(self) -> str:
        return f"unknown camera {self.args[0]!r} / 未知摄像机"


class Sources:
    """Makes the source of a stream; an ingest reports its status through ``report``."""

    def __init__(self, settings: Settings, cameras: CameraLookup, report: StatusReport) -> None:
        self.settings = settings
        self.cameras = cameras
        self._report = report
        self._resolvers: list[Resolver] = []

    def add_resolver(self, fn: Resolver) -> None:
        """Register ``fn(camera_id, profile) -> StreamSource | None`` for remote cameras."""
        self._resolvers.append(fn)

    def local(self, camera_id: str, profile: str) -> StreamSource:
        """The camera's own RTSP stream; :class:`UnknownCamera` if nobody knows it."""
        if not self.cameras.knows(camera_id):
            raise UnknownCamera(camera_id)
        return RtspSource(
            camera_id,
            profile,
            lambda: self.cameras.url_for(camera_id, profile),
            self.settings.streams,
            on_status=lambda status, reason: self._report(camera_id, profile, status, reason),
        )

    def variant(self, key: str, base: Hub, variant: str) -> StreamSource:
        """``variant`` transcoded from the base stream's hub."""
        return TranscodeSource(key, base, variant, self.settings.relay)

    def remote(self, camera_id: str, profile: str, variant: str | None = None) -> StreamSource:
        """The first resolver's source; :class:`UnknownCamera` if none knows the camera."""
        for resolver in self._resolvers:
            source = (
                resolver(camera_id, profile, variant) if variant else resolver(camera_id, profile)
            )
            if source is not None:
                return source
        raise UnknownCamera(camera_id)
