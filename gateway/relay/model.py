"""The relay's records and errors: one viewer's session, and what HTTP answers when
the relay cannot serve a request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.relay.peers import PeerStats
from gateway.streams.manager import Lease


class RelayError(Exception):
    """A request the relay cannot serve; ``status`` is the HTTP status to answer."""

    status = 503

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CameraNotFound(RelayError):
    status = 404


class CameraUnavailable(RelayError):
    status = 503


class TooManySessions(RelayError):
    status = 503


@dataclass(eq=False)
class Session:
    """One viewer."""

    id: str
    camera_id: str
    variant: str | None
    lease: Lease
    caller: str
    etag: str
    remote_ufrag: str
    codec: str = "h264"  # what the viewer gets: h264 or h265 (passthrough)
    created: float = field(default_factory=time.monotonic)
    closed: bool = False
    close_reason: str = ""

    def public(self, peer: PeerStats) -> dict[str, Any]:
        """The session as the API shows it, with its peer's figures (``Peers.stats``)."""
        return {
            "id": self.id,
            "camera": self.camera_id,
            "variant": self.variant or "main",
            "codec": self.codec,
            "state": peer.state,
            "age_s": round(time.monotonic() - self.created, 1),
            "units_sent": peer.units_sent,
            "bytes_sent": peer.bytes_sent,
            "dropped": peer.dropped,
            "viewer_reports": peer.viewer_reports,  # RTCP seen from the viewer since connecting
            "first_unit_after_s": peer.first_unit_after_s,
        }


class IceRestartUnsupported(RelayError):
    status = 422
