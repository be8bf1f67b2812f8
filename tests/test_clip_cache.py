"""The clip cache: bounded in bytes, counted by the disk guard, never a reason to evict
footage, and one build for concurrent requests of the same clip.

Real segments from the real writer, real clips from PyAV, a real small filesystem
(tmpfs) for the disk limits.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.recorder.index import segment_path
from gateway.recorder.playback import CLIP_IN_USE_S, ClipRefused
from gateway.recorder.retention import disk_state
from gateway.recorder.service import Recorder
from gateway.recorder.writer import SegmentWriter
from gateway.store.db import Database
from tests.recorder_media import encode_aus
from tests.test_recorder_playback import frames_and_span


def make_recorder(data: Path, segments: int = 4, **retention: float) -> SimpleNamespace:
    """A recorder with ``segments`` 4-s segments of cam-01, the first an hour ago."""
    settings = parse_settings(
        {
            "data_dir": str(data),
            "retention": {"max_usage_percent": 100, "min_free_mb": 0, **retention},
        }
    )
    db = Database(data / "gateway.db")
    gw = SimpleNamespace(
        settings=settings, data_dir=data, db=db, bus=EventBus(db), loop=None, path="gw",
    )  # fmt: skip
    rec = Recorder(gw, registry=None, streams=None)
    t0 = round(time.time()) - 3600
    aus = encode_aus(100, gop=25)
    for i in range(segments):
        start = t0 + 4 * i
        path = segment_path(rec.root, "cam-01", start)
        w = SegmentWriter(path, aus[0], "h264")
        for au in aus:
            w.write(au)
        res = w.close()
        sid = rec.index.open_segment("cam-01", "main", path, start, "h264", "continuous")
        rec.index.close_segment(sid, "cam-01", start, res.duration, res.bytes, 320, 240, False)
    return SimpleNamespace(rec=rec, db=db, t0=t0, data=data)


def age(path: Path, seconds: float) -> None:
    """Make a clip look last used ``seconds`` ago (players come and go)."""
    then = time.time() - seconds
    for p in (path, path.with_suffix(".json")):
        os.utime(p, (then, then))


def test_concurrent_requests_for_one_clip_share_one_build(tmp_path: Path) -> None:
    r = make_recorder(tmp_path)
    barrier = threading.Barrier(8)
    results: list[object] = []

    def request() -> None:
        barrier.wait()
        try:
            results.append(r.rec.clips.get("cam-01", r.t0 + 1, r.t0 + 15))
        except Exception as err:  # collected: the assertion below shows it
            results.append(err)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert r.rec.clips.builds == 1
    paths = {getattr(c, "path", c) for c in results}
    assert len(results) == 8 and len(paths) == 1, results
    n, _, decoded = frames_and_span(paths.pop())  # whole and playable
    assert n == decoded == 14 * 25  # [t0+1, t0+15), 25 fps
    assert not list(r.rec.clips.dir.glob("*.part"))
    r.db.close()


def test_the_cache_is_bounded_in_bytes_least_recently_used_first(tmp_path: Path) -> None:
    r = make_recorder(tmp_path)
    clips = r.rec.clips
    first = clips.get("cam-01", r.t0, r.t0 + 4)
    one = first.path.stat().st_size
    clips.max_bytes = int(2.5 * one)  # room for two such clips
    age(first.path, CLIP_IN_USE_S + 60)
    second = clips.get("cam-01", r.t0 + 4, r.t0 + 8)
    age(second.path, CLIP_IN_USE_S + 30)
    clips.get("cam-01", r.t0, r.t0 + 4)  # used again: now the most recent
    third = clips.get("cam-01", r.t0 + 8, r.t0 + 12)
    assert first.path.exists() and third.path.exists()
    assert not second.path.exists()  # least recently used
    assert clips.usage()["bytes"] <= clips.max_bytes
    # A clip bigger than the whole cache is refused, with what to do.
    with pytest.raises(ClipRefused, match="ask for a shorter span"):
        clips.get("cam-01", r.t0, r.t0 + 16)
    r.db.close()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    assert done.returncode == 0, f"mount tmpfs: {done.stderr.decode()} (run the tests as root)"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_clips_never_make_the_disk_guard_evict_footage(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", "16m") as data:
        r = make_recorder(data)
        rec = r.rec
        segments = len(rec.index.segments("cam-01", 0, time.time()))
        clip = rec.clips.get("cam-01", r.t0, r.t0 + 16)
        size = clip.path.stat().st_size
        age(clip.path, CLIP_IN_USE_S + 60)

        # The disk reaches its limit: the guard gives back the clip, no footage goes.
        disk = disk_state(rec.root)
        used = disk.total - disk.free
        limit = 100.0 * (used - size / 2) / disk.total
        rec.retention.settings = parse_settings(
            {"retention": {"max_usage_percent": limit, "min_free_mb": 0}}
        ).retention
        rec.retention.make_room()
        assert not clip.path.exists()
        assert len(rec.index.segments("cam-01", 0, time.time())) == segments
        assert rec.retention.evicted == 0

        # A new clip with no room for it within the limits is refused; footage stays.
        with pytest.raises(ClipRefused, match="without evicting recordings"):
            rec.clips.get("cam-01", r.t0, r.t0 + 16)
        rec.retention.make_room()
        assert len(rec.index.segments("cam-01", 0, time.time())) == segments
        assert rec.retention.evicted == 0
        assert rec.health()["clip_cache_bytes"] == 0
        r.db.close()
