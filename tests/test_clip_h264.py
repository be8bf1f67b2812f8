"""H.265 recordings as H.264 clips for browsers without an H.265 decoder.

Real H.265 segments from the real writer (libx265), the real clip cache, PyAV's libx264
for the transcode, and ffprobe to read what came out.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.recorder import playback
from gateway.recorder.index import segment_path
from gateway.recorder.playback import ClipCache, ClipRefused
from gateway.recorder.service import Recorder
from gateway.recorder.writer import SegmentWriter
from gateway.store.db import Database
from tests.recorder_media import encode_aus


def make_recorder(data: Path, codec: str, segments: int = 4) -> SimpleNamespace:
    """A recorder with ``segments`` 4-s segments of cam-01 in ``codec``, an hour ago."""
    settings = parse_settings(
        {"data_dir": str(data), "retention": {"max_usage_percent": 100, "min_free_mb": 0}}
    )
    db = Database(data / "gateway.db")
    gw = SimpleNamespace(
        settings=settings, data_dir=data, db=db, bus=EventBus(db), loop=None, path="gw",
    )  # fmt: skip
    rec = Recorder(gw, registry=None, streams=None)
    t0 = round(time.time()) - 3600
    aus = encode_aus(100, gop=25, codec=codec)
    for i in range(segments):
        start = t0 + 4 * i
        path = segment_path(rec.root, "cam-01", start)
        w = SegmentWriter(path, aus[0], codec)
        for au in aus:
            w.write(au)
        res = w.close()
        sid = rec.index.open_segment("cam-01", "main", path, start, codec, "continuous")
        rec.index.close_segment(sid, "cam-01", start, res.duration, res.bytes, 320, 240, False)
    return SimpleNamespace(rec=rec, db=db, t0=t0)


def probe(path: Path) -> dict[str, str]:
    fields = "stream=codec_name,nb_read_packets,width,height:format=duration"
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets"]
    out = subprocess.run(
        [*args, "-show_entries", fields, "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    data = json.loads(out.stdout)
    return {**data["streams"][0], "duration": data["format"]["duration"]}


def test_an_h265_span_becomes_one_shared_h264_clip_of_the_same_duration(tmp_path: Path) -> None:
    r = make_recorder(tmp_path, "hevc")
    plain = r.rec.clips.get("cam-01", r.t0 + 1, r.t0 + 15)
    assert plain.codec == "hevc" and not plain.transcoded
    original = probe(plain.path)
    assert original["codec_name"] == "hevc"

    barrier = threading.Barrier(6)
    results: list[object] = []

    def request() -> None:
        barrier.wait()
        try:
            results.append(r.rec.clips.get("cam-01", r.t0 + 1, r.t0 + 15, codec="h264"))
        except Exception as err:  # collected: the assertion below shows it
            results.append(err)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    paths = {getattr(c, "path", c) for c in results}
    assert len(results) == 6 and len(paths) == 1, results
    assert r.rec.clips.transcodes == 1  # six requests, one transcode
    assert r.rec.clips.builds == 1  # made from the cached H.265 clip, not remuxed again
    clip = results[0]
    assert getattr(clip, "transcoded", False) and getattr(clip, "codec", "") == "h264"
    copy = probe(paths.pop())
    assert copy["codec_name"] == "h264"
    assert (copy["width"], copy["height"]) == (320, 240)
    assert int(copy["nb_read_packets"]) == int(original["nb_read_packets"]) == 14 * 25
    assert float(copy["duration"]) == pytest.approx(float(original["duration"]), abs=0.1)
    assert float(copy["duration"]) == pytest.approx(14.0, abs=0.15)
    # Counted in the cache (bounded by retention.clip_cache_mb) beside its source.
    assert r.rec.clips.usage()["count"] == 2
    assert not list(r.rec.clips.dir.glob("*.part"))
    r.db.close()


def test_h264_footage_asked_as_h264_is_the_plain_clip(tmp_path: Path) -> None:
    r = make_recorder(tmp_path, "h264", segments=2)
    clip = r.rec.clips.get("cam-01", r.t0, r.t0 + 6, codec="h264")
    assert clip.codec == "h264" and not clip.transcoded
    assert r.rec.clips.transcodes == 0
    assert clip.path == r.rec.clips.get("cam-01", r.t0, r.t0 + 6).path
    with pytest.raises(ValueError, match="codec"):
        r.rec.clips.get("cam-01", r.t0, r.t0 + 6, codec="vp9")
    r.db.close()


def test_a_transcode_that_would_overflow_the_clip_cache_is_refused(tmp_path: Path) -> None:
    r = make_recorder(tmp_path, "hevc", segments=2)
    plain = r.rec.clips.get("cam-01", r.t0, r.t0 + 7)
    size = plain.path.stat().st_size
    # Room for the H.265 clip but not for its H.264 copy as well.
    small = ClipCache(r.rec.index, r.rec.clips.dir, max_bytes=int(size * 1.5))
    with pytest.raises(ClipRefused, match=r"clip_cache_mb|no room"):
        small.get("cam-01", r.t0, r.t0 + 7, codec="h264")
    assert small.transcodes == 0
    assert not list(small.dir.glob("*-h264.*"))
    r.db.close()


def test_an_h264_copy_is_bounded_in_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pages ask for a minute at a time; a longer request is cut (and says so).
    monkeypatch.setattr(playback, "MAX_TRANSCODE_S", 5.0)
    r = make_recorder(tmp_path, "hevc", segments=3)
    clip = r.rec.clips.get("cam-01", r.t0, r.t0 + 12, codec="h264")
    assert clip.transcoded and clip.truncated
    assert float(probe(clip.path)["duration"]) == pytest.approx(5.0, abs=0.15)
    plain = r.rec.clips.get("cam-01", r.t0, r.t0 + 12)  # as recorded: not cut
    assert not plain.truncated and plain.frames == 12 * 25
    r.db.close()
