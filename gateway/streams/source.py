"""The small abstract base of anything that feeds a hub.

An RTSP ingest, a transcoder and the cascade's remote-camera source all look the
same to the stream manager: ``await source.run(hub)`` publishes access units until
the task is cancelled, reconnecting by itself when its upstream goes away.
"""

from __future__ import annotations

import abc
import time
from typing import Any

from gateway.streams.hub import Hub

# Source states, as shown in stats and the UI overlay.
STARTING = "starting"
CONNECTING = "connecting"
ONLINE = "online"
OFFLINE = "offline"
STOPPED = "stopped"


class StreamSource(abc.ABC):
    """Something that feeds a :class:`Hub` until cancelled.

    Subclasses keep ``state``, ``reconnects`` and ``last_error`` up to date; the
    manager reads them for ``stats()``. ``run`` must return only when cancelled
    (raising ``CancelledError``) and must release every thread, socket and container
    it opened by then.
    """

    kind = "source"

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = STARTING
        self.reconnects = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.online_since = 0.0

    @abc.abstractmethod
    async def run(self, hub: Hub) -> None:
        """Publish into ``hub`` until cancelled."""

    def set_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()

    def stats(self) -> dict[str, Any]:
        """Source-level facts for ``StreamManager.stats()``."""
        return {
            "source": self.kind,
            "state": self.state,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at or None,
            "online_since": self.online_since or None,
        }
