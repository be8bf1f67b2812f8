"""RTSP ingest: one PyAV demux per camera stream, feeding a hub, reconnecting forever.

The blocking demux runs in a worker thread per connection (decision 9); access
units go straight into :meth:`Hub.publish`, which is thread-safe. The asyncio side
owns the reconnect loop (capped exponential backoff), the watchdog and the status
reports, so cancelling :meth:`RtspSource.run` stops everything.

Unsticking a demux: PyAV's read timeout (an FFmpeg interrupt callback) catches a
silent socket, but fires late and misses a camera that keeps sending something
other than video. The watchdog therefore acts on the time since the last *video*
packet. Closing the container from another thread would free it under the running
``av_read_frame`` (a crash), so the watchdog shuts the session's TCP sockets down
instead: the blocked read returns at once with an error and the worker thread
closes the container itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import av

from gateway.config import StreamSettings
from gateway.logs import redact
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.media.assembler import AccessUnitAssembler, Unit
from gateway.media.reorder import ReorderDetector
from gateway.streams import sockets
from gateway.streams.hub import Hub
from gateway.streams.reach import backoff
from gateway.streams.source import CONNECTING, OFFLINE, ONLINE, STOPPED, StreamSource

log = logging.getLogger(__name__)

UrlResolver = Callable[[], "str | Awaitable[str | None] | None"]
StatusCallback = Callable[[str, str], None]

# A timestamp jump bigger than this (either way) within one connection starts a new
# epoch, so consumers treat it like a reconnect instead of a long pause.
JUMP_S = 10.0


class RtspSource(StreamSource):
    """Ingest of one camera stream over RTSP (see the module docstring)."""

    kind = "rtsp"

    def __init__(
        self,
        camera_id: str,
        profile: str,
        url: str | UrlResolver,
        settings: StreamSettings,
        on_status: StatusCallback | None = None,
    ) -> None:
        super().__init__(f"{camera_id}/{profile}")
        self.camera_id = camera_id
        self.profile = profile
        self._url = url
        self.settings = settings
        self.on_status = on_status
        self.epoch = 0
        self.sessions = 0  # connection attempts made
        self.stalls = 0  # sessions ended by the watchdog
        self.abandoned = 0  # worker threads left to FFmpeg's own timeout
        self.skipped = 0  # packets before the first keyframe of a connection
        self.merge_hint = False  # learned: this camera splits pictures
        self.assembler_dropped = 0  # held bytes over the assembler's bounds, ended sessions
        self.ts_glitches = 0  # lone backward timestamp steps (not B-frames), ended sessions
        self._reported: str | None = None
        self._session: _Session | None = None
        self._unreachable = False  # the last attempt found the camera's port shut

    async def run(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        delay = s.backoff_initial_s
        try:
            while True:
                url = await self._resolve_url()
                if url is None:
                    self.set_error("no stream URL (camera unknown, or its ONVIF unreachable)")
                    self._report(OFFLINE, self.last_error)
                    delivered = self._unreachable = False
                else:
                    if self.sessions:
                        self.reconnects += 1
                        hub.clear_gop()
                    delivered = await self._run_session(loop, hub, url)
                self.state = OFFLINE
                if delivered:
                    delay = s.backoff_initial_s
                # Jitter only downwards: the first retry stays within backoff_initial_s.
                await backoff(url, delay * random.uniform(0.8, 1.0), self._unreachable)
                delay = min(delay * 2, s.backoff_max_s)
        finally:
            self.state = STOPPED

    async def _resolve_url(self) -> str | None:
        if isinstance(self._url, str):
            return self._url
        try:
            result = self._url()
            if inspect.isawaitable(result):
                result = await result
        except Exception as err:  # a broken registry must not kill the ingest
            log.warning("%s: resolving the stream URL failed: %s", self.name, err)
            return None
        return result or None

    async def _run_session(self, loop: asyncio.AbstractEventLoop, hub: Hub, url: str) -> bool:
        """One connection, from open to failure. True if it delivered access units."""
        self.epoch += 1
        self.sessions += 1
        self.state = CONNECTING
        session = _Session(self, hub, url, self.epoch, loop)
        self._session = session
        session.start()
        stall = self.settings.stall_timeout_s
        try:
            while not session.done.is_set():
                await asyncio.sleep(min(0.25, stall / 4))
                idle = time.monotonic() - session.last_packet
                if session.opened and idle > stall and not session.stop.is_set():
                    self.stalls += 1
                    session.error = f"no video for {idle:.1f} s (watchdog)"
                    log.warning("%s: %s, reconnecting", self.name, session.error)
                    session.abort()
            await self._await_end(session)
        except asyncio.CancelledError:
            session.abort()
            with contextlib.suppress(asyncio.CancelledError):
                await self._await_end(session)
            raise
        finally:
            self._session = None
        reason = session.error or "stream ended"
        self.set_error(reason)
        self._unreachable = session.unreachable
        status = "unauthorised" if session.unauthorised else OFFLINE
        log.info("%s: disconnected: %s", self.name, reason)
        self._report(status, reason)
        if session.assembler is not None and session.assembler.merge:
            self.merge_hint = True
        if session.assembler is not None:
            self.assembler_dropped += session.assembler.oversize_dropped
        self.ts_glitches += session.reorder.glitches
        return session.delivered > 0

    async def _await_end(self, session: _Session) -> None:
        """Wait for the worker thread; leave it behind if FFmpeg will not let go."""
        limit = self.settings.read_timeout_s * 2 + self.settings.open_timeout_s + 2
        deadline = time.monotonic() + limit
        while not session.done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not session.done.is_set():
            self.abandoned += 1
            log.error("%s: demux thread did not stop within %.0f s; abandoned", self.name, limit)

    def _report(self, status: str, reason: str) -> None:
        """Tell the registry about a status change (called on the event loop)."""
        if status != ONLINE:
            self.online_since = 0.0
        if status == self._reported or self.on_status is None:
            self._reported = status
            return
        self._reported = status
        try:
            self.on_status(status, reason)
        except Exception:
            log.exception("%s: status callback failed", self.name)

    def _online(self) -> None:
        self.state = ONLINE
        self.online_since = time.time()
        self._report(ONLINE, "")

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out.update(
            epoch=self.epoch,
            sessions=self.sessions,
            stalls=self.stalls,
            abandoned=self.abandoned,
            skipped_before_keyframe=self.skipped,
            assembler_dropped=self.assembler_dropped + _live_dropped(self._session),
            timestamp_glitches=self.ts_glitches + _live_glitches(self._session),
        )
        return out


# Errors that mean the camera's port took no connection at all (it is down, not broken).
_UNREACHABLE = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}


def _live_dropped(session: _Session | None) -> int:
    asm = session.assembler if session is not None else None
    return asm.oversize_dropped if asm is not None else 0


def _live_glitches(session: _Session | None) -> int:
    return session.reorder.glitches if session is not None else 0


def _describe(err: BaseException) -> str:
    text = redact(str(err)) or type(err).__name__
    if isinstance(err, av.error.ExitError):
        return "timed out (no data)"
    return text


class _Session:
    """One connection: the worker thread and what it shares with the event loop."""

    def __init__(
        self,
        source: RtspSource,
        hub: Hub,
        url: str,
        epoch: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.source = source
        self.hub = hub
        self.url = url
        self.epoch = epoch
        self.loop = loop
        self.stop = threading.Event()
        self.done = threading.Event()
        self.opened = False
        self.last_packet = time.monotonic()
        self.error = ""
        self.unauthorised = False
        self.unreachable = False  # no TCP connection could be made (refused, no route)
        self.delivered = 0
        self.assembler: AccessUnitAssembler | None = None
        self.connection: sockets.CameraConnection | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"ingest {source.name}", daemon=True
        )
        # Measured stream facts.
        self._info: StreamInfo | None = None
        self._since_key = 0
        self._gop: int | None = None
        self.reorder = ReorderDetector()  # B-frames: a reordering pattern, not one step
        self._last_dts: int | None = None
        self._last_pts: int | None = None
        self._invented_pts: int | None = None  # the last pts made up for a packet without
        self._time_base = Fraction(1, 90000)

    def start(self) -> None:
        self._thread.start()

    def abort(self) -> None:
        """Stop the worker: flag it and shut its sockets so a blocked read returns."""
        self.stop.set()
        if (connection := self.connection) is not None:
            connection.shutdown()

    # -- worker thread --------------------------------------------------------------
    def _main(self) -> None:
        name = self.source.name
        try:
            self._ingest()
        except Exception as err:
            if not self.error:
                self.error = _describe(err)
            if isinstance(err, av.error.PermissionError | av.error.HTTPUnauthorizedError) or (
                "401" in str(err)
            ):
                self.unauthorised = True
            self.unreachable = isinstance(err, OSError) and err.errno in _UNREACHABLE
            if not self.stop.is_set():
                log.info("%s: ingest error: %s", name, self.error)
        finally:
            self.done.set()

    def _ingest(self) -> None:
        s = self.source.settings
        name = self.source.name
        options = {
            "rtsp_transport": s.transport,
            # FFmpeg's socket timeout, in microseconds (``stimeout`` is gone since 5.0).
            "timeout": str(int(s.read_timeout_s * 1_000_000)),
            # Probe briefly: FFmpeg's default (5 s / 5 MB) reads about a second of video
            # before the first packet; SPS/PPS from the SDP already give the facts, and
            # 256 KB holds a 1080p keyframe for cameras that send them in-band only.
            "analyzeduration": "300000",
            "probesize": "262144",
        }
        self.connection = connection = sockets.CameraConnection(self.url)
        log.info("%s: connecting to %s (%s)", name, redact(self.url), s.transport)
        try:
            with connection.opening(self.stop) as turn:
                if not turn:
                    return  # stopped while another stream of this camera was connecting
                container = av.open(
                    self.url, options=options, timeout=(s.open_timeout_s, s.read_timeout_s)
                )
            try:
                self._demux(container)
            finally:
                container.close()
        finally:
            connection.close()

    def _demux(self, container: Any) -> None:
        name = self.source.name
        if self.stop.is_set():
            return
        if not container.streams.video:
            self.error = "the stream has no video track"
            return
        stream = container.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name
        self._time_base = stream.time_base or Fraction(1, 90000)
        self.assembler = AccessUnitAssembler(
            codec, bytes(ctx.extradata or b""), merge=self.source.merge_hint
        )
        self.opened = True
        self.last_packet = time.monotonic()
        log.info("%s: connected, %s %dx%d", name, codec, ctx.width, ctx.height)
        for packet in container.demux(stream):
            if self.stop.is_set():
                return
            if packet.size == 0:
                continue  # the flush packet at the end of the stream
            self.last_packet = time.monotonic()
            pts = packet.pts if packet.pts is not None else packet.dts
            if pts is None:
                # FFmpeg's RTP parser leaves the first picture of a session without
                # timestamps at times; this one is not on the stream's clock.
                pts = self._invented_pts = (self._last_pts or 0) + 1
            for unit in self.assembler.push(bytes(packet), pts, packet.dts, packet.is_keyframe):
                self._emit(unit, stream)
        if not self.stop.is_set():
            self.error = "the camera ended the stream"

    def _emit(self, unit: Unit, stream: Any) -> None:
        if self.stop.is_set():
            return
        if self._info is None and not unit.keyframe:
            self.source.skipped += 1
            return
        pts, dts = unit.pts, unit.dts
        b_frames = self.reorder.feed(pts, dts, measured=pts != self._invented_pts)
        dts = pts if dts is None and not b_frames else dts
        if self._last_dts is not None and dts is not None:
            jump = abs(dts - self._last_dts) * self._time_base
            if jump > JUMP_S:
                self.epoch = self.source.epoch = self.source.epoch + 1
                self.hub.clear_gop()
                log.warning("%s: timestamps jumped %.1f s; new epoch", self.source.name, jump)
            elif dts <= self._last_dts:
                dts = self._last_dts + 1  # muxers need rising dts
                pts = max(pts, dts)
        self._last_dts = dts if dts is not None else self._last_dts
        self._last_pts = unit.pts
        self._measure(unit.keyframe, stream)
        self.hub.publish(
            AccessUnit(
                data=unit.data,
                pts=pts,
                dts=dts,
                time_base=self._time_base,
                keyframe=unit.keyframe,
                wallclock=time.time(),
                epoch=self.epoch,
            )
        )
        self.delivered += 1

    def _measure(self, keyframe: bool, stream: Any) -> None:
        """Keep StreamInfo current: first keyframe, GOP, B-frames."""
        changed = False
        if keyframe:
            if self._info is not None and self._since_key and self._gop != self._since_key:
                self._gop = self._since_key
                changed = True
            self._since_key = 1
        else:
            self._since_key += 1
        ctx = stream.codec_context
        # ctx.has_b_frames: the reorder depth FFmpeg found while probing (the SPS says so).
        b_frames = self.reorder.b_frames or bool(ctx.has_b_frames)
        if self._info is None or changed or b_frames != self._info.has_b_frames:
            rate = stream.average_rate or stream.guessed_rate
            self._info = StreamInfo(
                codec=ctx.name,
                width=ctx.width,
                height=ctx.height,
                fps=float(rate) if rate else 0.0,
                profile=ctx.profile,
                has_b_frames=b_frames,
                gop=self._gop,
                extradata=bytes(ctx.extradata or b""),
                bitrate_bps=self.hub.info.bitrate_bps if self.hub.info else 0.0,
            )
            # Set before the unit is published: a consumer sees facts before pictures.
            self.hub.set_info(self._info)
            if self.delivered == 0:
                self.loop.call_soon_threadsafe(self.source._online)
