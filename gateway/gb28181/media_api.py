"""The seam between GB/T 28181 signalling and media.

The SIP side (``gateway.gb28181.upstream`` and friends) answers an INVITE from an
upper platform; the media side (``gateway.gb28181.ps``) reads the camera's hub and
sends it as MPEG-PS over RTP (GB/T 28181 annex C). They meet only here, so each can
be built and tested alone and ``gateway/app.py`` hands the one to the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

# Our side of the media connection, decided from the platform's SDP:
#   "udp"         RTP over UDP to remote_host:remote_port;
#   "tcp-listen"  the platform connects to us (its SDP says a=setup:active);
#   "tcp-connect" we connect to remote_host:remote_port (its SDP says a=setup:passive).
# Over TCP every RTP packet is framed with a 2-byte length (RFC 4571).
Transport = Literal["udp", "tcp-listen", "tcp-connect"]


class MediaError(Exception):
    """A stream could not be opened; ``str()`` is a reason fit for a SIP reason phrase and logs."""


@dataclass(frozen=True, slots=True)
class MediaRequest:
    call_id: str  # the SIP dialog's Call-ID: unique per stream
    camera_id: str  # what StreamManager.acquire takes (a local id or a tree path)
    profile: str  # "main" or "sub"
    remote_host: str
    remote_port: int  # 0 for "tcp-listen"
    ssrc: int  # from the platform's y= line (decimal, 10 digits)
    transport: Transport
    payload_type: int = 96  # PS
    local_host: str = "0.0.0.0"  # address to send from or listen on


@dataclass(frozen=True, slots=True)
class MediaSession:
    call_id: str
    local_host: str  # for the SDP answer's c= line
    local_port: int  # for the SDP answer's m= line
    ssrc: int


class MediaBackend(Protocol):
    """Opens and closes PS/RTP streams of cameras for an upper platform."""

    # Called with (call_id, reason) when a stream ends by itself (camera gone, platform
    # not reading); the GB/T 28181 part sets it to hang the dialog up with a BYE.
    on_ended: Callable[[str, str], None] | None

    async def open(self, request: MediaRequest) -> MediaSession:
        """Start sending (or listening for "tcp-listen"); raise MediaError with a reason."""
        ...

    async def close(self, call_id: str) -> None:
        """Stop the stream of that dialog; unknown ids are ignored."""
        ...

    def playing(self) -> int:
        """Streams being sent now."""
        ...
