"""Where an export's footage comes from: this gateway's recorder, or a child's through the tree.

A camera path without ``/`` is recorded here and is cut with the recorder's own clip
code (:func:`gateway.recorder.playback.build_clip`, a remux, never a transcode); a path
below a child goes through :mod:`gateway.cascade.access`, exactly as a clip download
or a playback of that camera does, and the child that records it cuts the clip.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av

from gateway.cascade import access
from gateway.cascade.local import Local
from gateway.recorder.playback import MAX_CLIP_S, NothingRecorded, build_clip
from gateway.recorder.service import Recorder

# Segments closer than this are one continuous run (segment boundaries are not gaps).
JOIN_S = 1.5


@dataclass
class Run:
    """A continuous recorded stretch of one camera, inside the requested span."""

    start: float
    end: float
    bytes: int = 0

    @property
    def seconds(self) -> float:
        return self.end - self.start


class SourceError(Exception):
    """Footage of a camera cannot be read (child offline, recorder off, …): the reason."""


def _ts(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    ts = datetime.fromisoformat(str(value))
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def runs_of(segments: list[tuple[float, float, int]], t0: float, t1: float) -> list[Run]:
    """Merge (start, end, bytes) segments into continuous runs clipped to [t0, t1]."""
    runs: list[Run] = []
    for start, end, size in sorted(segments):
        start, end = max(start, t0), min(end, t1)
        if end <= start:
            continue
        if runs and start - runs[-1].end <= JOIN_S:
            runs[-1].end = max(runs[-1].end, end)
            runs[-1].bytes += size
        else:
            runs.append(Run(start, end, size))
    return runs


def gaps_of(runs: list[Run], t0: float, t1: float) -> list[tuple[float, float]]:
    """The parts of [t0, t1] no run covers (at least a second long)."""
    out: list[tuple[float, float]] = []
    cursor = t0
    for run in runs:
        if run.start - cursor >= 1.0:
            out.append((cursor, run.start))
        cursor = max(cursor, run.end)
    if t1 - cursor >= 1.0:
        out.append((cursor, t1))
    return out


def pieces(run: Run) -> list[Run]:
    """A run cut into clips of at most an hour (the clip code's bound)."""
    out: list[Run] = []
    start = run.start
    while start < run.end - 0.001:
        end = min(run.end, start + MAX_CLIP_S)
        share = int(run.bytes * (end - start) / run.seconds) if run.seconds else 0
        out.append(Run(start, end, share))
        start = end
    return out


def _local(path: str) -> bool:
    return "/" not in path


def _recorder(here: Local) -> Recorder:
    if here.recorder is None:
        raise SourceError("the recorder is not running on this gateway / 未启用录像")
    return here.recorder


async def recorded_runs(here: Local, path: str, t0: float, t1: float) -> list[Run]:
    """The camera's recorded runs in [t0, t1]. Raises :class:`SourceError`."""
    if _local(path):
        rec = _recorder(here)
        rows = await asyncio.to_thread(rec.index.segments, path, t0, t1)
        return runs_of([(s["start"], s["end"], int(s["bytes"])) for s in rows], t0, t1)
    try:
        items = await access.recordings(here, path, {"start": iso(t0), "end": iso(t1)})
    except access.AccessError as err:
        raise SourceError(str(err)) from None
    segs: list[tuple[float, float, int]] = []
    for item in items:
        try:
            segs.append((_ts(item["start"]), _ts(item["end"]), int(item.get("bytes") or 0)))
        except (KeyError, ValueError, TypeError):
            continue  # a row we cannot read is not footage we can promise
    return runs_of(segs, t0, t1)


async def fetch_clip(here: Local, path: str, piece: Run, out: Path) -> int:
    """Write the MP4 of ``piece`` to ``out``; returns its size. Raises :class:`SourceError`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if _local(path):
        rec = _recorder(here)
        try:
            await asyncio.to_thread(build_clip, rec.index, path, piece.start, piece.end, out)
        except NothingRecorded as err:
            raise SourceError(str(err)) from None
        except (av.FFmpegError, OSError, ValueError) as err:
            # A segment that cannot be remuxed (torn, a full disk): say which and why.
            raise SourceError(f"clip of {path} failed: {err}") from None
        return out.stat().st_size
    tmp = out.with_suffix(".part")
    size = 0
    try:
        with tmp.open("wb") as fh:
            body = access.clip(here, path, {"start": iso(piece.start), "end": iso(piece.end)})
            async for chunk in body:
                await asyncio.to_thread(fh.write, chunk)
                size += len(chunk)
    except access.AccessError as err:
        tmp.unlink(missing_ok=True)
        raise SourceError(str(err)) from None
    except TimeoutError:
        tmp.unlink(missing_ok=True)
        raise SourceError("the child did not send the clip in time / 下级平台响应超时") from None
    if size == 0:
        tmp.unlink(missing_ok=True)
        raise SourceError("the child sent an empty clip")
    tmp.replace(out)
    return size
