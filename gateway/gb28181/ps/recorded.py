"""Recorded footage as PS over RTP: the media half of GB/T 28181 Playback and Download.

:func:`read_units` walks the recorder's MP4 segments with PyAV (demux only: nothing is
decoded) and yields each picture as Annex B with its wall-clock time, starting at the
keyframe at or before the requested time. :class:`RecordedStream` muxes them with the
live muxer (:mod:`gateway.gb28181.ps.mux`) and sends them on the same RTP sinks,
paced against the wall clock of the recording: real time × ``Scale`` for Playback,
``downloadspeed`` × for Download. PLAY/PAUSE/seek/Scale (MANSRTSP) change the pacing
at once; a platform that stops reading holds the sender (no frame is dropped from a
recording) until ``stall_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gateway.gb28181.media_api import MediaRequest
from gateway.gb28181.ps.mux import CLOCK_HZ, STREAM_TYPES, PsMuxer
from gateway.gb28181.ps.rtp import DEFAULT_MTU, RtpPacketizer, RtpSink, SinkError
from gateway.media.annexb import avcc_to_annexb, is_annexb, looks_avcc
from gateway.media.nal import length_size
from gateway.media.params import ParameterSets

log = logging.getLogger(__name__)
BATCH = 8  # units read per trip to the reader thread

# An MP4 file, or a function (called in the reader's thread) that fetches one; a fetched
# file belongs to the reader, which deletes it once read.
Source = Path | Callable[[], Path]


@dataclass(frozen=True, slots=True)
class Unit:
    wall: float  # epoch seconds of this picture
    data: bytes  # Annex B, parameter sets before keyframes
    keyframe: bool


def codec_of(files: list[tuple[Source, float, float]]) -> str:
    """The video codec of the first readable file at hand ("" if none)."""
    for path, _start, _end in files:
        if not isinstance(path, Path):
            continue  # not fetched yet
        try:
            with av.open(str(path)) as inp:
                if inp.streams.video:
                    return str(inp.streams.video[0].codec_context.name)
        except (OSError, av.FFmpegError):
            continue
    return ""


class _Cursor:
    """Where the reader is in [start, end): pictures from the latest keyframe are held
    back until ``start`` (a picture needs its keyframe), then pass; ``done`` at ``end``."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.pending: list[Unit] = []
        self.started = self.done = False

    def take(self, unit: Unit) -> list[Unit]:
        if unit.wall >= self.end:
            self.done = True
            return []
        if self.started:
            return [unit]
        if unit.keyframe:
            self.pending = [unit]
        elif self.pending:
            self.pending.append(unit)
        if unit.wall < self.start or not self.pending:
            return []
        self.started = True
        out, self.pending = self.pending, []
        return out


def read_units(
    files: list[tuple[Source, float, float]], start: float, end: float
) -> Generator[Unit, None, None]:
    """Pictures of [start, end) from ``files`` (blocking; run it in a thread). Files
    ending before ``start`` are neither opened nor fetched (each begins on a keyframe)."""
    cursor = _Cursor(start, end)
    for source, seg_start, seg_end in files:
        if cursor.done or seg_start >= end:
            break
        if seg_end <= start:
            continue
        try:
            path = source if isinstance(source, Path) else source()
        except Exception as err:  # a child gone, a timeout: the footage ends here
            log.warning("recording from %.3f not fetched: %s", seg_start, err)
            break
        try:
            with contextlib.closing(_file_units(path, seg_start)) as units:
                for unit in units:
                    yield from cursor.take(unit)
                    if cursor.done:
                        break
        finally:
            if not isinstance(source, Path):
                path.unlink(missing_ok=True)  # fetched for this reader only
    if not cursor.started:
        yield from cursor.pending


def _file_units(path: Path, seg_start: float) -> Generator[Unit, None, None]:
    """Every picture of one MP4 as Annex B, timed from ``seg_start`` (its first frame)."""
    try:
        inp = av.open(str(path))
    except (OSError, av.FFmpegError) as err:
        log.warning("recording %s unreadable: %s", path.name, err)
        return
    with inp:
        if not inp.streams.video:
            return
        ist = inp.streams.video[0]
        tb = ist.time_base or Fraction(1, 90_000)
        codec = str(ist.codec_context.name)
        extradata = bytes(ist.codec_context.extradata or b"")
        params = ParameterSets(codec, extradata)
        size = length_size(codec, extradata)
        base: int | None = None
        try:
            for packet in inp.demux(ist):
                if packet.dts is None or packet.size == 0:
                    continue
                base = packet.dts if base is None else base
                raw = bytes(packet)
                if looks_avcc(raw, size):
                    data = avcc_to_annexb(raw, size)
                elif is_annexb(raw):
                    data = raw
                else:
                    continue
                key = bool(packet.is_keyframe)
                wall = seg_start + float((packet.dts - base) * tb)
                yield Unit(wall, params.fix(data, key), key)
        except av.FFmpegError as err:  # a segment still being written ends torn
            log.debug("recording %s ends early: %s", path.name, err)


def _batch(units: Iterator[Unit]) -> list[Unit]:
    out: list[Unit] = []
    for unit in units:
        out.append(unit)
        if len(out) >= BATCH:
            break
    return out


def _close(units: Generator[Unit, None, None]) -> None:
    """Close the reader (its container); a batch still being read after a cancellation
    finishes first (a generator cannot be closed while it runs in another thread)."""
    for _ in range(500):
        try:
            units.close()
            return
        except ValueError:
            time.sleep(0.01)


class RecordedStream:
    """One Playback/Download stream (see the module docstring). ``on_done(reason)`` is
    called once when it ends by itself: ``"end"`` when the span was sent whole."""

    def __init__(
        self,
        request: MediaRequest,
        sink: RtpSink,
        files: list[tuple[Source, float, float]],
        codec: str,
        start: float,
        end: float,
        *,
        speed: float = 1.0,
        on_done: Callable[[str], None] | None = None,
        accept_timeout_s: float = 20.0,
        stall_timeout_s: float = 15.0,
        max_buffered_bytes: int = 2 * 1024 * 1024,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        if codec not in STREAM_TYPES:
            raise ValueError(f"recorded codec {codec!r} cannot go into PS")
        self.request = request
        self.sink = sink
        self.files = files
        self.start, self.end = start, end
        self.speed = speed
        self.on_done = on_done
        self.accept_timeout_s = accept_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_buffered_bytes = max_buffered_bytes
        self.muxer = PsMuxer(codec)
        self.packetizer = RtpPacketizer(request.ssrc, request.payload_type, mtu)
        self.position = start  # wall time of the last picture sent
        self.frames_sent = 0
        self.paused = False
        self.end_reason = ""
        self._seek: float | None = None
        self._changed = asyncio.Event()
        self._rebase = True
        self.task: asyncio.Task[None] | None = None

    # -- control (MANSRTSP) --------------------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        self._changed.set()

    def play(self, seek_s: float | None = None, scale: float | None = None) -> None:
        if seek_s is not None:
            self._seek = min(self.start + seek_s, self.end)
        if scale is not None:
            self.speed = scale
        self.paused = False
        self._rebase = True
        self._changed.set()
        if seek_s is not None and self.task is not None and self.task.done():
            self.begin()  # a seek after the end of the span: play again from there

    # -- running -------------------------------------------------------------------------
    def begin(self) -> None:
        self.task = asyncio.create_task(
            self._run(), name=f"gb28181 playback {self.request.call_id}"
        )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.sink.close()

    async def _run(self) -> None:
        cam = self.request.camera_id
        reason, cancelled = "error", False
        try:
            await self.sink.ready(self.accept_timeout_s)
            reason = await self._play()
        except SinkError as err:
            reason = str(err)
        except asyncio.CancelledError:
            reason, cancelled = self.end_reason or "closed", True
            raise
        except Exception as err:  # a bug here ends this stream only, loudly
            reason = f"sender failed: {err}"
            log.exception("%s: GB/T 28181 playback %s failed", cam, self.request.call_id)
        finally:
            self.end_reason = self.end_reason or reason
            log.info("%s: GB/T 28181 playback %s ended (%s), %d frames sent", cam,
                     self.request.call_id, reason, self.frames_sent)  # fmt: skip
            if not cancelled and self.on_done is not None:
                self.on_done(reason)

    async def _play(self) -> str:
        position, self._seek = (self.start if self._seek is None else self._seek), None
        while True:
            units = read_units(self.files, position, self.end)
            try:
                outcome = await self._send_all(units)
            finally:
                await asyncio.to_thread(_close, units)
            if outcome != "seek":
                return outcome
            assert self._seek is not None
            position, self._seek = self._seek, None

    async def _send_all(self, units: Iterator[Unit]) -> str:
        base_wall = base_mono = 0.0
        while batch := await asyncio.to_thread(_batch, units):
            for unit in batch:
                while True:  # wait for this picture's time, a control, or a paused end
                    if self._seek is not None:
                        return "seek"
                    if self.sink.lost is not None:
                        return self.sink.lost
                    if self.paused:
                        self._changed.clear()
                        await self._changed.wait()
                        continue
                    if self._rebase:
                        base_wall, base_mono, self._rebase = unit.wall, time.monotonic(), False
                    delay = base_mono + (unit.wall - base_wall) / self.speed - time.monotonic()
                    if delay <= 0:
                        break
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._changed.wait()
                if not await self._drained():
                    return f"the platform stopped reading for {self.stall_timeout_s:g} s"
                ts = round((unit.wall - self.start) * CLOCK_HZ)
                frame = self.muxer.mux_raw(unit.data, ts, None, unit.keyframe)
                self.sink.send(self.packetizer.packetize(frame.data, frame.timestamp))
                self.frames_sent += 1
                self.position = unit.wall
        return "end"

    async def _drained(self) -> bool:
        """Wait while the platform's side holds too much unsent (a recording drops nothing)."""
        deadline = time.monotonic() + self.stall_timeout_s
        while self.sink.buffered() > self.max_buffered_bytes:
            if time.monotonic() > deadline or self.sink.lost is not None:
                return False
            await asyncio.sleep(0.02)
            self._rebase = True
        return True
