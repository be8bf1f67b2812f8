"""Clip extraction: remux the segments overlapping [start, end] into one MP4.

The clip starts at the keyframe at or before ``start`` (a picture needs its
keyframe) and stops before ``end``. It is a plain MP4 with ``moov`` first
(``faststart``): Chromium plays and seeks it through HTTP Range requests, which the
API serves from the file. Gaps between segments become a held picture, so the clip's
clock stays the wall clock. A change of codec parameters (a camera reconfigured
mid-range) ends the clip there; ``truncated`` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from gateway.recorder.index import RecordingIndex

log = logging.getLogger(__name__)

MAX_CLIP_S = 3600.0
CLIP_TB = Fraction(1, 90000)
CLIP_TTL_S = 900.0


class NothingRecorded(LookupError):
    """No footage of the camera in the requested range."""


@dataclass
class Clip:
    path: Path
    start: float  # wall time of the first (key)frame
    end: float
    frames: int
    truncated: bool


def _same_stream(a: av.video.stream.VideoStream, b: av.video.stream.VideoStream) -> bool:
    ca, cb = a.codec_context, b.codec_context
    return (ca.name, ca.width, ca.height, ca.extradata) == (
        cb.name,
        cb.width,
        cb.height,
        cb.extradata,
    )


def build_clip(
    index: RecordingIndex, camera: str, start: float, end: float, out_path: Path
) -> Clip:
    """Write the clip to ``out_path`` (blocking). Raises :class:`NothingRecorded`."""
    segments = index.segments(camera, start, end)
    if not segments:
        raise NothingRecorded(f"no recording of {camera} between the given times")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".part")
    out = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
    ost = None
    template = None
    t0: float | None = None
    pending: list[tuple[av.Packet, float, Fraction]] = []
    last_dts = -1
    last_wall = start
    frames = 0
    truncated = False
    done = False

    def emit(packet: av.Packet, wall: float, src_tb: Fraction) -> None:
        nonlocal last_dts, frames, last_wall
        assert t0 is not None and ost is not None  # set before the first emit
        dts = round((wall - t0) / CLIP_TB)
        dts = max(dts, last_dts + 1)
        shift = packet.pts - packet.dts if packet.pts is not None else 0
        packet.pts = dts + round(shift * src_tb / CLIP_TB)
        packet.dts = dts
        packet.duration = round((packet.duration or 0) * src_tb / CLIP_TB)
        packet.time_base = CLIP_TB
        packet.stream = ost
        out.mux(packet)
        last_dts = dts
        last_wall = wall
        frames += 1

    try:
        for seg in segments:
            if done:
                break
            try:
                inp = av.open(str(index.abs(seg["path"])))
            except (OSError, av.FFmpegError, ValueError) as err:
                log.warning("camera %s: segment %s unreadable: %s", camera, seg["path"], err)
                continue
            with inp:
                ist = inp.streams.video[0]
                if ost is None:
                    template = ist
                    ost = out.add_stream_from_template(ist)
                    ost.time_base = CLIP_TB
                    if ist.codec_context.name == "hevc":
                        ost.codec_tag = "hvc1"
                elif template is None or not _same_stream(template, ist):
                    truncated = True
                    break
                tb = ist.time_base
                if tb is None:
                    continue  # a stream without a time base cannot be placed in time
                base = None
                try:
                    for packet in inp.demux(ist):
                        if packet.dts is None:
                            continue
                        if base is None:
                            base = packet.dts
                        wall = seg["start"] + float((packet.dts - base) * tb)
                        if wall >= end:
                            done = True
                            break
                        if t0 is None:
                            if packet.is_keyframe and (wall <= start or not pending):
                                pending = [(packet, wall, tb)]  # the latest keyframe <= start
                            elif pending:
                                pending.append((packet, wall, tb))
                            else:
                                continue  # before any keyframe
                            if wall < start:
                                continue
                            t0 = pending[0][1]
                            for p, w, ptb in pending:
                                emit(p, w, ptb)
                            pending = []
                            continue
                        emit(packet, wall, tb)
                except av.FFmpegError as err:
                    # A segment still being written ends in a torn fragment: stop there.
                    log.debug("camera %s: %s ends early: %s", camera, seg["path"], err)
        if t0 is None and pending:
            t0 = pending[0][1]
            for p, w, ptb in pending:
                emit(p, w, ptb)
    finally:
        try:
            out.close()
        except av.FFmpegError as err:
            log.warning("camera %s: finishing clip failed: %s", camera, err)
    if frames == 0 or t0 is None:
        tmp.unlink(missing_ok=True)
        raise NothingRecorded(f"no recording of {camera} between the given times")
    os.replace(tmp, out_path)
    return Clip(out_path, t0, last_wall + 0.04, frames, truncated)


class ClipRefused(RuntimeError):
    """A clip that would break a bound: bigger than the cache, or footage would be evicted."""


# A clip returned this recently may still be streaming to its player: not evicted.
CLIP_IN_USE_S = 30.0


class ClipCache:
    """Clips made recently, kept a while so a player's Range requests hit one file.

    Bounded in bytes (``max_bytes``, least recently used go first). Clips live on the
    recordings filesystem, so the disk guard counts them; it drops idle clips
    (:meth:`reclaim`) before it evicts any footage, and a clip the disk has no room for
    within the retention limits is refused (:class:`ClipRefused`) rather than letting
    the guard evict recordings to make room for it. Concurrent requests for the same
    clip wait for one build and share its file.
    """

    def __init__(
        self,
        index: RecordingIndex,
        directory: Path,
        max_bytes: int = 2 * 1024**3,
        over_limit: Callable[[int], bool] | None = None,
    ) -> None:
        self.index = index
        self.dir = directory
        self.max_bytes = max_bytes
        self._over_limit = over_limit or (lambda _extra: False)
        self.builds = 0
        self.refused = 0
        self._guard = threading.Lock()
        self._building: dict[str, threading.Lock] = {}

    def get(self, camera: str, start: float, end: float) -> Clip:
        """Build (or reuse) the clip of [start, end]; blocking."""
        end = min(end, start + MAX_CLIP_S)
        self._sweep()
        segments = self.index.segments(camera, start, end)
        if not segments:
            raise NothingRecorded(f"no recording of {camera} between the given times")
        # The key covers the footage too: a segment still growing makes a new clip.
        key = repr(
            (camera, round(start, 3), round(end, 3), [(s["id"], s["end"]) for s in segments])
        )
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        path = self.dir / f"{name}.mp4"
        with self._guard:
            lock = self._building.setdefault(name, threading.Lock())
        with lock:  # one build per clip; the others wait and take its result
            try:
                if (clip := self._cached(path)) is not None:
                    return clip
                self._make_room(sum(int(s["bytes"]) for s in segments), keep=path)
                clip = build_clip(self.index, camera, start, end, path)
                self.builds += 1
                path.with_suffix(".json").write_text(
                    json.dumps(
                        {
                            "start": clip.start,
                            "end": clip.end,
                            "frames": clip.frames,
                            "truncated": clip.truncated,
                        }
                    )
                )
                return clip
            finally:
                with self._guard:
                    self._building.pop(name, None)

    def _cached(self, path: Path) -> Clip | None:
        meta = path.with_suffix(".json")
        try:
            data = json.loads(meta.read_text())
            os.utime(path)  # recently used: evicted last
            os.utime(meta)
        except (OSError, ValueError):
            return None
        return Clip(path, data["start"], data["end"], data["frames"], data["truncated"])

    def _make_room(self, needed: int, keep: Path) -> None:
        """Make ``needed`` bytes of room in the cache and on the disk, or refuse."""
        if needed > self.max_bytes:
            self.refused += 1
            raise ClipRefused(
                f"the clip would take about {needed / 1e6:.0f} MB, more than the clip cache"
                f" ({self.max_bytes / 1e6:.0f} MB, retention.clip_cache_mb): ask for a shorter span"
            )
        clips = self._clips()
        used = sum(size for _, size, _ in clips)
        now = time.time()
        for entry, size, mtime in clips:  # oldest first
            if used + needed <= self.max_bytes and not self._over_limit(needed):
                break
            if entry == keep or now - mtime < CLIP_IN_USE_S:
                continue
            self._remove(entry)
            used -= size
        if used + needed > self.max_bytes or self._over_limit(needed):
            self.refused += 1
            raise ClipRefused(
                "no room for this clip without evicting recordings (the recordings disk is at"
                " its retention limits, or other clips are being played); try again shortly"
            )

    def reclaim(self) -> int:
        """Drop every idle clip (the disk guard calls this before evicting footage)."""
        freed = 0
        now = time.time()
        for entry, size, mtime in self._clips():
            if now - mtime >= CLIP_IN_USE_S:
                self._remove(entry)
                freed += size
        return freed

    def usage(self) -> dict[str, int]:
        clips = self._clips()
        return {
            "count": len(clips),
            "bytes": sum(size for _, size, _ in clips),
            "max_bytes": self.max_bytes,
            "builds": self.builds,
            "refused": self.refused,
        }

    def _clips(self) -> list[tuple[Path, int, float]]:
        """(path, bytes, last use) of every finished clip, least recently used first."""
        out: list[tuple[Path, int, float]] = []
        if not self.dir.is_dir():
            return out
        for entry in self.dir.glob("*.mp4"):
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((entry, st.st_size, st.st_mtime))
        return sorted(out, key=lambda c: c[2])

    @staticmethod
    def _remove(entry: Path) -> None:
        for p in (entry.with_suffix(".json"), entry):
            with contextlib.suppress(OSError):
                p.unlink()

    def _sweep(self) -> None:
        if not self.dir.is_dir():
            return
        cutoff = time.time() - CLIP_TTL_S
        for entry in self.dir.iterdir():
            try:
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
            except OSError:
                pass
