"""Recorder CPU per 1080p25 stream against ``ffmpeg -c copy -f segment`` (same input, same run).

    .venv/bin/python bench/bench_recorder.py [--seconds 300] [--runs 3]

The input is a raw Annex B H.264 1080p25 stream (libx264, GOP 50, ~4 Mbit/s) made
once. Both sides read that file and write 10 s MP4 segments without transcoding:

* ``ffmpeg``: ``ffmpeg -f h264 -framerate 25 -i in.h264 -c copy -f segment
  -segment_time 10 -segment_format mp4 ...`` (CPU = the child's user+sys time);
* ours: PyAV demux → AccessUnit → a real ``Hub`` → the recorder's camera thread
  (``CameraRecorder``: segmenting, fMP4 remux, SQLite index).

Like with like: both run as a child process of this one, and both are charged their
whole process (CPU = the child's user+sys time: ffmpeg's exec and library loading,
our interpreter start-up and imports). Each side's start-up is also measured alone (the
same command on a one-second input) and subtracted for the steady-state figure, so
neither is flattered: the whole-process ratio favours ffmpeg on short inputs, the
steady-state ratio is what a recorder running for days costs.

Prints medians of ``--runs`` runs, both ratios ours/ffmpeg (goal ≤ 1.5×) and how many
real-time streams one core records (media seconds per CPU second).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import parse_settings  # noqa: E402
from gateway.events.bus import EventBus  # noqa: E402
from gateway.media.access_unit import AccessUnit  # noqa: E402
from gateway.recorder.service import Recorder  # noqa: E402
from gateway.store.db import Database  # noqa: E402
from gateway.streams.hub import Hub  # noqa: E402

FPS = 25
TB = Fraction(1, 90000)


def encode_block() -> bytes:
    """20 s of moving, noisy 1080p25 as Annex B (keyframes carry SPS/PPS)."""
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt = 1920, 1080, "yuv420p"
    cc.time_base = Fraction(1, FPS)
    cc.framerate = FPS
    cc.bit_rate = 4_000_000
    cc.options = {
        "preset": "ultrafast",
        "x264-params": "keyint=50:min-keyint=50:bframes=0:repeat-headers=1",
    }
    yy, xx = np.mgrid[0:1080, 0:1920]
    # Noise makes the encoder spend its bitrate, as a real scene does (~4 Mbit/s).
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 24, (1080, 1920), dtype=np.uint8) for _ in range(7)]
    chunks: list[bytes] = []
    for i in range(20 * FPS):
        y = ((xx + yy * 2 + i * 8) % 232).astype(np.uint8) + noise[i % 7]
        frame = av.VideoFrame.from_ndarray(
            np.concatenate([y, np.full((540, 1920), 128, np.uint8)]), format="yuv420p"
        )
        frame.pts = i
        chunks += [bytes(p) for p in cc.encode(frame)]
    chunks += [bytes(p) for p in cc.encode(None)]
    return b"".join(chunks)


def write_input(path: Path, block: bytes, seconds: int) -> None:
    """The 20 s block repeated to ``seconds``."""
    with path.open("wb") as f:
        for _ in range(max(1, seconds // 20)):
            f.write(block)


def first_gop(block: bytes) -> bytes:
    """The block up to its second keyframe (each keyframe starts with an SPS)."""
    sps = b"\x00\x00\x00\x01\x67"
    second = block.find(sps, block.find(sps) + 1)
    return block[:second] if second > 0 else block


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ours_process(src: Path, out: Path, paced: bool = False) -> tuple[float, int]:
    """``run_ours`` in a child process; its whole CPU (start-up and imports included)."""
    before = cpu_children()
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(src), str(out), *(["--paced"] if paced else [])],
        check=True,
        capture_output=True,
        text=True,
    )
    return cpu_children() - before, int(done.stdout.split()[-1])


def run_ffmpeg(src: Path, out: Path, paced: bool = False) -> float:
    out.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            *(["-re"] if paced else []),
            "-f", "h264", "-framerate", str(FPS), "-i", str(src),
            "-c", "copy", "-f", "segment", "-segment_time", "10",
            "-segment_format", "mp4", str(out / "seg%04d.mp4"),
        ],
        check=True,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


class _Streams:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def acquire(self, camera_id: str, profile: str = "main", variant=None, consumer: str = ""):
        return SimpleNamespace(hub=self.hub, release=lambda: None)


def run_ours(src: Path, out: Path, paced: bool = False) -> tuple[float, int]:
    settings = parse_settings(
        {
            "data_dir": str(out),
            "cameras": [{"id": "cam", "recording": {"mode": "continuous", "segment_s": 10}}],
            "retention": {"max_usage_percent": 100, "min_free_mb": 0},
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    db = Database(out / "gateway.db")
    hub = Hub("cam/main")
    gw = SimpleNamespace(
        settings=settings, data_dir=out, db=db, bus=EventBus(db), loop=None, path="bench",
    )  # fmt: skip
    rec = Recorder(gw, registry=None, streams=_Streams(hub))
    import asyncio

    start_cpu = cpu_self()
    asyncio.run(rec.start())
    while not hub.subscribers:
        time.sleep(0.01)
    sub = hub.subscribers[0]
    t0 = time.time()
    start_wall = time.monotonic()
    n = 0
    with av.open(str(src), format="h264") as container:
        for packet in container.demux(video=0):
            if packet.size == 0:
                continue
            if paced:  # as a camera delivers: one frame every 40 ms
                delay = start_wall + n / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            while sub.qsize > 400:  # back-pressure instead of real-time pacing
                time.sleep(0.002)
            hub.publish(
                AccessUnit(
                    bytes(packet), n * 3600, n * 3600, TB, packet.is_keyframe, t0 + n / FPS, 1
                )
            )
            n += 1
    while sub.qsize:
        time.sleep(0.01)
    asyncio.run(rec.stop())
    cpu = cpu_self() - start_cpu
    segs = rec.index.segments("cam", 0, t0 + n / FPS + 60)
    db.close()
    assert abs(sum(s["duration"] for s in segs) - n / FPS) < 0.2, "recording incomplete"
    return cpu, n


def main() -> int:
    if sys.argv[1:2] == ["--child"]:  # run_ours_process: record, print the frame count
        _, src, out, *rest = sys.argv[1:]
        print(run_ours(Path(src), Path(out), paced="--paced" in rest)[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="media seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--paced-seconds", type=int, default=40, help="also a real-time run (ffmpeg -re); 0: no"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as tmp:
        src = Path(tmp) / "in.h264"
        t = time.monotonic()
        block = encode_block()
        write_input(src, block, args.seconds)
        print(f"input: {src.stat().st_size / 1e6:.0f} MB, made in {time.monotonic() - t:.0f} s")
        # Start-up alone: the same commands on one GOP (2 s) of input.
        tiny = Path(tmp) / "tiny.h264"
        tiny.write_bytes(first_gop(block))
        ff_up = statistics.median(run_ffmpeg(tiny, Path(tmp) / f"ffu{i}") for i in range(3))
        ours_up = statistics.median(
            run_ours_process(tiny, Path(tmp) / f"oursu{i}")[0] for i in range(3)
        )
        print(
            f"start-up (one 2 s GOP of input): ffmpeg {ff_up:.2f} s CPU,"
            f" recorder {ours_up:.2f} s CPU"
        )
        ff, ours = [], []
        for i in range(args.runs):
            ff.append(run_ffmpeg(src, Path(tmp) / f"ff{i}"))
            cpu, frames = run_ours_process(src, Path(tmp) / f"ours{i}")
            ours.append(cpu)
            print(f"run {i + 1}: ffmpeg {ff[-1]:.2f} s, recorder {cpu:.2f} s CPU ({frames} frames)")
        media = frames / FPS
        f_med, o_med = statistics.median(ff), statistics.median(ours)
        f_run, o_run = f_med - ff_up, o_med - ours_up
        mbps = src.stat().st_size * 8 / media / 1e6
        print(f"media per run: {media:.0f} s of 1080p25 at {mbps:.1f} Mbit/s")
        for name, cpu, run in (
            ("ffmpeg -c copy -f segment", f_med, f_run),
            ("recorder", o_med, o_run),
        ):
            print(
                f"{name:<26} {cpu:.2f} s CPU median, whole process; {run:.2f} s without"
                f" start-up ({100 * run / media:.2f} % of a core)"
            )
        print(
            f"ratio recorder/ffmpeg: whole process {o_med / f_med:.2f}x,"
            f" steady state {o_run / f_run:.2f}x (goal <= 1.5x)"
        )
        print(
            f"real-time streams per core: recorder {media / o_run:.0f}, ffmpeg {media / f_run:.0f}"
        )
        if args.paced_seconds:
            short = Path(tmp) / "short.h264"
            write_input(short, block, args.paced_seconds)
            ff_p = run_ffmpeg(short, Path(tmp) / "ffp", paced=True)
            ours_p, frames_p = run_ours_process(short, Path(tmp) / "oursp", paced=True)
            media_p = frames_p / FPS
            print(
                f"paced at 25 fps for {media_p:.0f} s (whole processes): ffmpeg -re"
                f" {ff_p:.2f} s CPU, recorder {ours_p:.2f} s CPU (incl. the feeding demux),"
                f" ratio {ours_p / ff_p:.2f}x; without start-up"
                f" {(ours_p - ours_up) / (ff_p - ff_up):.2f}x,"
                f" {100 * (ours_p - ours_up) / media_p:.2f} % of a core per stream"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
