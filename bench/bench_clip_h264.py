"""Playback of H.265 recordings as H.264: what the on-request clip transcode costs.

    .venv/bin/python bench/bench_clip_h264.py [--seconds 10] [--size 1920x1080] [--rounds 3]

Records ``--seconds`` of H.265 (libx265, 25 fps, 1 s GOP) through the real segment
writer into a recording index, then per round, in a fresh clip cache:

- ``remux``: the plain clip (what a browser with H.265 gets; the reference);
- ``h264``: the same clip as H.264 (``codec=h264``: decode H.265, encode libx264
  veryfast), which is what a browser without H.265 waits for before the first picture.

Reported: wall time of each (median of the rounds), the transcode's speed in multiples
of real time, and its ratio to the remux measured in the same run. The machine is
shared: compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import parse_settings  # noqa: E402
from gateway.events.bus import EventBus  # noqa: E402
from gateway.recorder.index import segment_path  # noqa: E402
from gateway.recorder.playback import ClipCache  # noqa: E402
from gateway.recorder.service import Recorder  # noqa: E402
from gateway.recorder.writer import SegmentWriter  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from tests.recorder_media import encode_aus  # noqa: E402


def record(data: Path, seconds: int, size: tuple[int, int]) -> tuple[Recorder, float]:
    settings = parse_settings(
        {"data_dir": str(data), "retention": {"max_usage_percent": 100, "min_free_mb": 0}}
    )
    db = Database(data / "gateway.db")
    gw = SimpleNamespace(
        settings=settings, data_dir=data, db=db, bus=EventBus(db), loop=None, path="gw",
    )  # fmt: skip
    rec = Recorder(gw, registry=None, streams=None)
    t0 = round(time.time()) - 3600
    aus = encode_aus(seconds * 25, gop=25, codec="hevc", size=size)
    path = segment_path(rec.root, "cam-01", t0)
    writer = SegmentWriter(path, aus[0], "hevc")
    for au in aus:
        writer.write(au)
    res = writer.close()
    sid = rec.index.open_segment("cam-01", "main", path, t0, "hevc", "continuous")
    rec.index.close_segment(sid, "cam-01", t0, res.duration, res.bytes, *size, False)
    return rec, float(t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        rec, t0 = record(Path(tmp), args.seconds, (w, h))
        remux: list[float] = []
        h264: list[float] = []
        for i in range(args.rounds):
            cache = ClipCache(rec.index, Path(tmp) / f"clips-{i}")
            started = time.perf_counter()
            plain = cache.get("cam-01", t0, t0 + args.seconds)
            remux.append(time.perf_counter() - started)
            started = time.perf_counter()
            copy = cache.get("cam-01", t0, t0 + args.seconds, codec="h264")
            h264.append(time.perf_counter() - started)
            assert copy.transcoded and copy.frames == plain.frames
        r, t = statistics.median(remux), statistics.median(h264)
        print(
            json.dumps(
                {
                    "clip": f"{args.seconds} s H.265 {w}x{h}25",
                    "remux_s": round(r, 3),
                    "h264_transcode_s": round(t, 3),
                    "transcode_x_realtime": round(args.seconds / t, 2),
                    "transcode_over_remux": round(t / r, 1),
                    "h264_bytes_over_h265": round(
                        copy.path.stat().st_size / plain.path.stat().st_size, 2
                    ),
                }
            )
        )


if __name__ == "__main__":
    main()
