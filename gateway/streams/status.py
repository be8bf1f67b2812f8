"""Camera status from the streams: the ingest's reports, and a port check for idle cameras.

The camera's status follows its main stream; another profile speaks for the camera only
while the main stream is not being ingested. RTSP-only cameras nobody streams are
checked with a bare TCP connect (ONVIF ones are probed by the registry): without it they
would read offline until first viewed.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.streams import reach
from gateway.streams.cameras import CameraLookup
from gateway.streams.leases import StreamEntry, stream_key

IDLE_CHECK_S = 15.0


class CameraStatus:
    """Reports to the registry (through ``cameras``) for the streams in ``entries``."""

    def __init__(self, cameras: CameraLookup, entries: Mapping[str, StreamEntry]) -> None:
        self.cameras = cameras
        self._entries = entries  # the manager's, read live

    def report(self, camera_id: str, profile: str, status: str, reason: str) -> None:
        """An ingest's status; a reason carries its reconnect count (event loop only)."""
        if profile != "main" and stream_key(camera_id, "main", None) in self._entries:
            return
        entry = self._entries.get(stream_key(camera_id, profile, None))
        reconnects = entry.source.reconnects if entry else 0
        if reason and reconnects:
            reason = f"{reason} (reconnects: {reconnects})"
        self.cameras.report(camera_id, status, reason)

    async def watch_idle(self) -> None:
        """Check the idle RTSP cameras' ports every ``IDLE_CHECK_S``, forever."""
        await reach.watch_idle(
            self._idle_cameras,
            lambda cid: self.cameras.url_for(cid, "main"),
            self._idle_status,
            IDLE_CHECK_S,
        )

    def _idle_cameras(self) -> list[str]:
        registry = self.cameras.registry
        if registry is None:
            return []
        return [
            c.id for c in registry.list() if c.enabled and not c.onvif and not self._streamed(c.id)
        ]

    def _streamed(self, camera_id: str) -> bool:
        """Whether any stream of the camera is being ingested (it reports the status)."""
        prefix = f"{camera_id}/"
        return any(key.startswith(prefix) for key in list(self._entries))

    def _idle_status(self, camera_id: str, status: str, reason: str) -> None:
        if not self._streamed(camera_id):  # an ingest that started meanwhile speaks for it
            self.report(camera_id, "main", status, reason)
