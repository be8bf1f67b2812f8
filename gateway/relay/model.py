"""The relay's records and errors: one viewer's session, and what HTTP answers when
the relay cannot serve a request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection

from gateway.relay.track import PassthroughTrack
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
    pc: RTCPeerConnection
    track: PassthroughTrack
    lease: Lease
    caller: str
    etag: str
    remote_ufrag: str
    codec: str = "h264"  # what the viewer gets: h264 or h265 (passthrough)
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    rx_packets: int | None = None  # from the viewer (RTCP), as last seen
    rx_flowing: bool = False  # the viewer has sent RTCP since connecting
    rx_seen_at: float = field(default_factory=time.monotonic)
    closed: bool = False
    close_reason: str = ""

    def public(self) -> dict[str, Any]:
        t = self.track
        return {
            "id": self.id,
            "camera": self.camera_id,
            "variant": self.variant or "main",
            "codec": self.codec,
            "state": self.pc.connectionState,
            "age_s": round(time.monotonic() - self.created, 1),
            "units_sent": t.units_sent,
            "bytes_sent": t.bytes_sent,
            "dropped": t.dropped,
            "viewer_reports": self.rx_flowing,  # RTCP seen from the viewer since connecting
            "first_unit_after_s": (
                round(t.first_sent_at - self.created, 3) if t.first_sent_at else None
            ),
        }


class IceRestartUnsupported(RelayError):
    status = 422
