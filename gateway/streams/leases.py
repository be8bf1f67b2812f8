"""A running camera stream (:class:`StreamEntry`) and a consumer's claim on it (:class:`Lease`).

Hub keys: ``cam-01/main``, ``cam-01/sub``, and ``cam-01/main@low`` for variants.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.streams.hub import Hub
from gateway.streams.source import StreamSource


def stream_key(camera_id: str, profile: str, variant: str | None) -> str:
    """The hub key of a camera's stream (``cam-01/main``, ``cam-01/main@low``)."""
    return f"{camera_id}/{profile}" + (f"@{variant}" if variant else "")


class Lease:
    """A consumer's claim on a hub. ``release()`` is idempotent and thread-safe."""

    def __init__(
        self, entry: StreamEntry, consumer: str, on_release: Callable[[Lease], None]
    ) -> None:
        self.hub: Hub = entry.hub
        self.key = entry.key
        self.consumer = consumer
        self._entry = entry
        self._on_release = on_release  # the manager's: the last one starts the linger
        self._released = False

    @property
    def entry(self) -> StreamEntry:
        return self._entry

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._on_release(self)

    def revoke(self) -> None:
        """Mark released without telling the manager (it is stopping the stream itself)."""
        self._released = True

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.key} {self.consumer!r}{' released' if self._released else ''}>"


@dataclass(eq=False)
class StreamEntry:
    """One camera stream the manager runs: its hub, its source and who holds it."""

    key: str
    camera_id: str
    profile: str
    variant: str | None
    hub: Hub
    source: StreamSource
    leases: list[Lease] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    linger: asyncio.TimerHandle | None = None
    base_lease: Lease | None = None
    created: float = field(default_factory=time.time)
    # rates, sampled by gateway.streams.stats
    sample: tuple[float, int, int] = (0.0, 0, 0)
    fps_in: float = 0.0
    bitrate_bps: float = 0.0
