"""``gw.streams``: one ingest per camera stream, started on demand, shared by leases.

Every consumer (relay, recorder, motion, cascade uplink, snapshots) calls
:meth:`StreamManager.acquire` and reads ``lease.hub``; nobody opens a camera
itself (decision 1). The first lease starts the source; ``streams.linger_s`` after
the last lease is released the source is stopped and its hub closed, so a viewer
who reloads the page does not cost the camera a new session.

Hub keys: ``cam-01/main``, ``cam-01/sub``, and ``cam-01/main@low`` for variants.
A variant holds a lease on its base stream for as long as it lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import Settings
from gateway.streams import reach
from gateway.streams.cameras import CameraLookup
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource
from gateway.streams.snapshot import take_snapshot
from gateway.streams.source import StreamSource
from gateway.streams.transcode import VARIANTS, TranscodeSource

log = logging.getLogger(__name__)

IDLE_CHECK_S = 15.0
PROFILE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
Resolver = Callable[..., "StreamSource | None"]  # (camera, profile[, variant])


class UnknownCamera(KeyError):
    """No local camera, static camera or resolver knows this id."""

    def __str__(self) -> str:
        return f"unknown camera {self.args[0]!r} / 未知摄像机"


class Lease:
    """A consumer's claim on a hub. ``release()`` is idempotent and thread-safe."""

    def __init__(self, manager: StreamManager, entry: _Entry, consumer: str) -> None:
        self.hub: Hub = entry.hub
        self.key = entry.key
        self.consumer = consumer
        self._manager = manager
        self._entry = entry
        self._released = False

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._manager._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.key} {self.consumer!r}{' released' if self._released else ''}>"


@dataclass(eq=False)
class _Entry:
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
    # rates, sampled by the manager
    sample: tuple[float, int, int] = (0.0, 0, 0)
    fps_in: float = 0.0
    bitrate_bps: float = 0.0


def _key(camera_id: str, profile: str, variant: str | None) -> str:
    return f"{camera_id}/{profile}" + (f"@{variant}" if variant else "")


class StreamManager:
    """The ``streams`` part (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Callable[[], Any] | None = None,
        url_resolver: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.cameras = CameraLookup(settings, registry, url_resolver)
        self._resolvers: list[Resolver] = []
        self._entries: dict[str, _Entry] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._idle: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sampler = asyncio.create_task(self._sample_rates(), name="streams rates")
        self._idle = asyncio.create_task(
            reach.watch_idle(
                self._idle_cameras,
                lambda cid: self.cameras.url_for(cid, "main"),
                self._idle_status,
                IDLE_CHECK_S,
            ),
            name="streams idle check",
        )

    async def stop(self) -> None:
        for task in (self._sampler, self._idle):
            if task is not None:
                task.cancel()
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            for lease in list(entry.leases):
                lease._released = True
            entry.leases.clear()
            self._stop_entry(entry)
        pending = [t for t in self._stopping.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=15)

    def add_resolver(self, fn: Resolver) -> None:
        """Register ``fn(camera_id, profile) -> StreamSource | None`` for remote cameras."""
        self._resolvers.append(fn)

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
        key = _key(camera_id, profile, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._create(camera_id, profile, variant, key)
                self._entries[key] = entry
                self._call_in_loop(self._launch, entry)
            lease = Lease(self, entry, consumer)
            entry.leases.append(lease)
            if entry.linger is not None:
                handle, entry.linger = entry.linger, None
                self._call_in_loop(handle.cancel)
        log.debug("%s: lease for %s", key, consumer or "?")
        return lease

    def hub(self, camera_id: str, profile: str = "main", variant: str | None = None) -> Hub | None:
        """The hub if it is running now (no lease taken; for peeking only)."""
        entry = self._entries.get(_key(camera_id, profile, variant))
        return entry.hub if entry else None

    def _create(self, camera_id: str, profile: str, variant: str | None, key: str) -> _Entry:
        hub = Hub(key)
        base_lease = None
        if variant is not None and "/" in camera_id:
            # A remote camera's variant is made by the gateway the camera hangs off, so a
            # thin uplink carries only the small stream (ARCHITECTURE decision 7).
            source: StreamSource = self._remote_source(camera_id, profile, variant)
        elif variant is not None:
            base_lease = self.acquire(camera_id, profile, None, consumer=f"variant:{variant}")
            source = TranscodeSource(key, base_lease.hub, variant, self.settings.relay)
        elif "/" in camera_id:
            source = self._remote_source(camera_id, profile)
        else:
            if not self.cameras.knows(camera_id):
                raise UnknownCamera(camera_id)
            source = RtspSource(
                camera_id,
                profile,
                lambda: self.cameras.url_for(camera_id, profile),
                self.settings.streams,
                on_status=lambda status, reason: self._status(camera_id, profile, status, reason),
            )
        return _Entry(key, camera_id, profile, variant, hub, source, base_lease=base_lease)

    def _remote_source(
        self, camera_id: str, profile: str, variant: str | None = None
    ) -> StreamSource:
        for resolver in self._resolvers:
            source = (
                resolver(camera_id, profile, variant) if variant else resolver(camera_id, profile)
            )
            if source is not None:
                return source
        raise UnknownCamera(camera_id)

    def _release(self, lease: Lease) -> None:
        entry = lease._entry
        with self._lock:
            if lease in entry.leases:
                entry.leases.remove(lease)
            if entry.leases or self._entries.get(entry.key) is not entry:
                return
        self._call_in_loop(self._schedule_linger, entry)

    def _schedule_linger(self, entry: _Entry) -> None:
        with self._lock:
            if entry.leases or entry.linger is not None:
                return
            assert self._loop is not None
            entry.linger = self._loop.call_later(
                self.settings.streams.linger_s, self._expire, entry
            )

    def _expire(self, entry: _Entry) -> None:
        with self._lock:
            entry.linger = None
            if entry.leases or self._entries.get(entry.key) is not entry:
                return
            del self._entries[entry.key]
        log.info("%s: no consumers for %.0f s, stopping", entry.key, self.settings.streams.linger_s)
        self._stop_entry(entry)

    # -- running sources (event loop only) ----------------------------------------------
    def _launch(self, entry: _Entry) -> None:
        previous = self._stopping.get(entry.key)
        entry.task = asyncio.create_task(self._run(entry, previous), name=f"source {entry.key}")

    async def _run(self, entry: _Entry, previous: asyncio.Task[None] | None) -> None:
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

    def _stop_entry(self, entry: _Entry) -> None:
        if entry.linger is not None:
            entry.linger.cancel()
            entry.linger = None
        task = entry.task
        stopper = asyncio.ensure_future(self._finish(entry, task))
        self._stopping[entry.key] = stopper
        stopper.add_done_callback(functools.partial(self._stopped, entry.key))

    def _stopped(self, key: Any, stopper: asyncio.Future[None]) -> None:
        if self._stopping.get(key) is stopper:
            self._stopping.pop(key)

    async def _finish(self, entry: _Entry, task: asyncio.Task[None] | None) -> None:
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

    # -- camera status --------------------------------------------------------------------
    def _status(self, camera_id: str, profile: str, status: str, reason: str) -> None:
        # The camera's status follows its main stream; another profile speaks for the
        # camera only while the main stream is not being ingested.
        if profile != "main" and _key(camera_id, "main", None) in self._entries:
            return
        entry = self._entries.get(_key(camera_id, profile, None))
        reconnects = entry.source.reconnects if entry else 0
        if reason and reconnects:
            reason = f"{reason} (reconnects: {reconnects})"
        self.cameras.report(camera_id, status, reason)

    def _idle_cameras(self) -> list[str]:
        """RTSP-only cameras nobody streams (ONVIF ones are checked by the registry):
        without a check they would read offline until first viewed."""
        registry = self.cameras.registry()
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
            self._status(camera_id, "main", status, reason)

    # -- observability -----------------------------------------------------------------
    async def _sample_rates(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for entry in list(self._entries.values()):
                t0, n0, b0 = entry.sample
                n, b = entry.hub.published, entry.hub.bytes_in
                if t0:
                    dt = now - t0
                    entry.fps_in = (n - n0) / dt
                    entry.bitrate_bps = (b - b0) * 8 / dt
                    if entry.hub.info is not None and entry.variant is None:
                        entry.hub.info.bitrate_bps = entry.bitrate_bps
                entry.sample = (now, n, b)

    def stats(self) -> list[dict[str, Any]]:
        """Per hub: rates, subscribers, state, reconnects, last error (for /metrics, UI)."""
        out = []
        for entry in sorted(list(self._entries.values()), key=lambda e: e.key):
            info = entry.hub.info
            subs = entry.hub.subscribers
            src = entry.source.stats()
            out.append(
                {
                    "key": entry.key,
                    "camera": entry.camera_id,
                    "profile": entry.profile,
                    "variant": entry.variant,
                    "state": src["state"],
                    "lingering": entry.linger is not None,
                    "fps_in": round(entry.fps_in, 2),
                    "bitrate_bps": round(entry.bitrate_bps),
                    "subscribers": len(subs),
                    "consumers": [lease.consumer for lease in list(entry.leases)],
                    "dropped": sum(s.dropped for s in subs),
                    "reconnects": src["reconnects"],
                    "last_error": src["last_error"],
                    "codec": info.codec if info else None,
                    "width": info.width if info else None,
                    "height": info.height if info else None,
                    "fps": info.fps if info else None,
                    "profile_name": info.profile if info else None,
                    "gop": info.gop if info else None,
                    "has_b_frames": info.has_b_frames if info else None,
                    "passthrough_ok": info.passthrough_ok if info else None,
                    "source": src,
                }
            )
        return out

    def metrics(self) -> Any:
        """Prometheus samples (see ``gateway.metrics``), one series per running hub."""
        from gateway.metrics import Sample

        for s in self.stats():
            labels = {"stream": s["key"], "camera": s["camera"]}
            yield Sample("stream_fps", s["fps_in"], labels, "Access units per second in")
            yield Sample("stream_bitrate_bps", s["bitrate_bps"], labels, "Bits per second in")
            yield Sample("stream_subscribers", s["subscribers"], labels, "Hub subscribers")
            yield Sample(
                "stream_reconnects_total", s["reconnects"], labels, "Reconnects", "counter"
            )
            yield Sample(
                "stream_dropped", s["dropped"], labels, "Access units dropped for slow readers"
            )
            yield Sample(
                "stream_assembler_dropped_total",
                s["source"].get("assembler_dropped", 0),
                labels,
                "Held data dropped beyond the access-unit assembler's byte bounds",
                "counter",
            )
            yield Sample(
                "stream_timestamp_glitches_total",
                s["source"].get("timestamp_glitches", 0),
                labels,
                "Lone backward timestamp steps ignored (not taken for B-frames)",
                "counter",
            )
            yield Sample(
                "stream_online",
                1 if s["state"] == "online" else 0,
                labels,
                "1 while the source delivers",
            )

    # -- snapshots ---------------------------------------------------------------------
    async def snapshot(self, camera_id: str, profile: str = "main", timeout: float = 8.0) -> bytes:
        """A JPEG of the camera now (see :mod:`gateway.streams.snapshot`)."""
        return await take_snapshot(self, camera_id, profile, timeout)


def build(gw: Any) -> StreamManager:
    """Factory for ``gateway.app._factories()``: the registry is looked up lazily."""
    return StreamManager(gw.settings, registry=lambda: gw.part("registry"))
