"""``gw.streams``: one ingest per camera stream, started on demand, shared by leases.

Every consumer (relay, recorder, motion, cascade uplink, snapshots) calls
:meth:`StreamManager.acquire` and reads ``lease.hub``; nobody opens a camera
itself (decision 1). The first lease starts the source; ``streams.linger_s`` after
the last lease is released the source is stopped and its hub closed, so a viewer
who reloads the page does not cost the camera a new session.

Hub keys: ``cam-01/main``, ``cam-01/sub``, and ``cam-01/main@low`` for variants.
A variant holds a lease on its base stream for as long as it lives.

Here: leases, linger and running the sources. Next to it: :mod:`~gateway.streams.leases`
(a lease and the stream it holds), :mod:`~gateway.streams.sources` (which source feeds a
stream), :mod:`~gateway.streams.status` (camera status from the streams),
:mod:`~gateway.streams.stats` (rates, stats, metrics) and :mod:`~gateway.streams.snapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gateway.config import Settings
from gateway.metrics import Sample
from gateway.streams.cameras import CameraLookup, UrlResolver
from gateway.streams.hub import Hub
from gateway.streams.leases import Lease as Lease
from gateway.streams.leases import StreamEntry, stream_key
from gateway.streams.snapshot import take_snapshot
from gateway.streams.sources import Resolver, Sources
from gateway.streams.sources import UnknownCamera as UnknownCamera
from gateway.streams.stats import sample_rates, stream_metrics, stream_stats
from gateway.streams.status import CameraStatus
from gateway.streams.transcode import VARIANTS

if TYPE_CHECKING:  # only for its type: the streams run without the ONVIF stack loaded
    from gateway.cameras.registry import Registry

log = logging.getLogger(__name__)

PROFILE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class StreamManager:
    """The ``streams`` part (see the module docstring).

    ``registry`` is the camera registry (built before the streams), or None to run
    on the configuration's cameras or ``url_resolver`` alone (tests, tools, benchmarks).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Registry | None = None,
        url_resolver: UrlResolver | None = None,
    ) -> None:
        self.settings = settings
        self.cameras = CameraLookup(settings, registry, url_resolver)
        self._entries: dict[str, StreamEntry] = {}
        self.status = CameraStatus(self.cameras, self._entries)
        self.sources = Sources(settings, self.cameras, self.status.report)
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._idle: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sampler = asyncio.create_task(
            sample_rates(self._entries.values), name="streams rates"
        )
        self._idle = asyncio.create_task(self.status.watch_idle(), name="streams idle check")

    async def stop(self) -> None:
        for task in (self._sampler, self._idle):
            if task is not None:
                task.cancel()
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            for lease in list(entry.leases):
                lease.revoke()
            entry.leases.clear()
            self._stop_entry(entry)
        pending = [t for t in self._stopping.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=15)

    def add_resolver(self, fn: Resolver) -> None:
        """Register ``fn(camera_id, profile) -> StreamSource | None`` for remote cameras."""
        self.sources.add_resolver(fn)

    # -- leases ---------------------------------------------------------------------------
    def acquire(
        self,
        camera_id: str,
        profile: str = "main",
        variant: str | None = None,
        consumer: str = "",
    ) -> Lease:
        """A lease on the hub of ``camera_id``/``profile`` (or its ``variant``).

        Starts the source on demand. Raises :class:`UnknownCamera` for an id nobody
        knows and ``ValueError`` for a malformed profile or unknown variant. Callable
        from the event loop or from any thread once the manager has started.
        """
        if self._loop is None:
            raise RuntimeError("the stream manager is not started")
        if not PROFILE_PATTERN.match(profile or ""):
            raise ValueError(f"invalid stream profile {profile!r}")
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        profile = self.cameras.effective_profile(camera_id, profile)
        key = stream_key(camera_id, profile, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._create(camera_id, profile, variant, key)
                self._entries[key] = entry
                self._call_in_loop(self._launch, entry)
            lease = Lease(entry, consumer, self._release)
            entry.leases.append(lease)
            if entry.linger is not None:
                handle, entry.linger = entry.linger, None
                self._call_in_loop(handle.cancel)
        log.debug("%s: lease for %s", key, consumer or "?")
        return lease

    def hub(self, camera_id: str, profile: str = "main", variant: str | None = None) -> Hub | None:
        """The hub if it is running now (no lease taken; for peeking only)."""
        entry = self._entries.get(stream_key(camera_id, profile, variant))
        return entry.hub if entry else None

    def _create(self, camera_id: str, profile: str, variant: str | None, key: str) -> StreamEntry:
        hub = Hub(key)
        base_lease = None
        if variant is not None and "/" in camera_id:
            # A remote camera's variant is made by the gateway the camera hangs off, so a
            # thin uplink carries only the small stream (ARCHITECTURE decision 7).
            source = self.sources.remote(camera_id, profile, variant)
        elif variant is not None:
            base_lease = self.acquire(camera_id, profile, None, consumer=f"variant:{variant}")
            source = self.sources.variant(key, base_lease.hub, variant)
        elif "/" in camera_id:
            source = self.sources.remote(camera_id, profile)
        else:
            source = self.sources.local(camera_id, profile)
        return StreamEntry(key, camera_id, profile, variant, hub, source, base_lease=base_lease)

    def _release(self, lease: Lease) -> None:
        entry = lease.entry
        with self._lock:
            if lease in entry.leases:
                entry.leases.remove(lease)
            if entry.leases or self._entries.get(entry.key) is not entry:
                return
        self._call_in_loop(self._schedule_linger, entry)

    def _schedule_linger(self, entry: StreamEntry) -> None:
        with self._lock:
            if entry.leases or entry.linger is not None:
                return
            assert self._loop is not None
            entry.linger = self._loop.call_later(
                self.settings.streams.linger_s, self._expire, entry
            )

    def _expire(self, entry: StreamEntry) -> None:
        with self._lock:
            entry.linger = None
            if entry.leases or self._entries.get(entry.key) is not entry:
                return
            del self._entries[entry.key]
        log.info("%s: no consumers for %.0f s, stopping", entry.key, self.settings.streams.linger_s)
        self._stop_entry(entry)

    # -- running sources (event loop only) ----------------------------------------------
    def _launch(self, entry: StreamEntry) -> None:
        previous = self._stopping.get(entry.key)
        entry.task = asyncio.create_task(self._run(entry, previous), name=f"source {entry.key}")

    async def _run(self, entry: StreamEntry, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            # One session per camera stream, ever: let the old one hang up first.
            await asyncio.wait([previous])
        log.info("%s: starting %s source", entry.key, entry.source.kind)
        try:
            await entry.source.run(entry.hub)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            entry.source.set_error(f"source failed: {err}")
            log.exception("%s: source failed", entry.key)

    def _stop_entry(self, entry: StreamEntry) -> None:
        if entry.linger is not None:
            entry.linger.cancel()
            entry.linger = None
        task = entry.task
        stopper = asyncio.ensure_future(self._finish(entry, task))
        self._stopping[entry.key] = stopper
        stopper.add_done_callback(functools.partial(self._stopped, entry.key))

    def _stopped(self, key: str, stopper: asyncio.Future[None]) -> None:
        if self._stopping.get(key) is stopper:
            self._stopping.pop(key)

    async def _finish(self, entry: StreamEntry, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        entry.hub.close()
        if entry.base_lease is not None:
            entry.base_lease.release()

    def _call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the stream manager is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    # -- observability and snapshots ------------------------------------------------------
    def stats(self) -> list[dict[str, Any]]:
        """Per hub: rates, subscribers, state, reconnects, last error (for /metrics, UI)."""
        return stream_stats(list(self._entries.values()))

    def metrics(self) -> Iterator[Sample]:
        """Prometheus samples (see ``gateway.metrics``), one series per running hub."""
        yield from stream_metrics(self.stats())

    async def snapshot(self, camera_id: str, profile: str = "main", timeout: float = 8.0) -> bytes:
        """A JPEG of the camera now (see :mod:`gateway.streams.snapshot`)."""
        return await take_snapshot(self, camera_id, profile, timeout)
