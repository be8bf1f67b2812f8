"""Video-quality diagnosis benchmarks: cost per sample, cost per camera, accuracy.

    .venv/bin/python bench/bench_diagnosis.py            # everything (~1 min)
    .venv/bin/python bench/bench_diagnosis.py --quick    # shorter stream, fewer seeds

1. Cost of one diagnosis sample (strided copy of the due frame, copy of the next
   frame, all measures, scores, hysteresis) on real decoded yuv420p frames of 360p,
   720p and 1080p; medians, thread CPU time.
2. Cost per camera: a 640x360 25 fps H.264 sub-stream (GOP 50, ~500 kbit/s) through
   ``MotionWorker`` with the diagnosis tap at 10 s (default) and 1 s intervals; the
   tap's own CPU time over stream time is the diagnosis's share of one core, next to
   the worker's whole CPU (decode + motion) and a decode-only pass, same run.
3. Per-kind precision and recall on the synthetic clips, ours and the OpenCV
   reference pipeline (Laplacian variance, histogram statistics, absdiff).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import DiagnosisSettings, MotionSettings
from gateway.diagnosis.accuracy import (
    default_clips,
    evaluate,
    format_table,
    run_gateway,
    run_opencv,
)
from gateway.diagnosis.camera import CameraDiagnoser
from gateway.diagnosis.synth import scene
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.motion.worker import MotionWorker
from gateway.streams.hub import Hub

SIZES = [(640, 360), (1280, 720), (1920, 1080)]


def _frames(w: int, h: int, n: int, seed: int = 1) -> list[av.VideoFrame]:
    """Decoded-like frames: a synthetic colour scene scaled to w×h, with sensor noise."""
    import cv2

    rng = np.random.default_rng(seed)
    y, u, v = scene(rng, night=False)
    y = cv2.resize(y, (w, h))
    u, v = cv2.resize(u, (w // 2, h // 2)), cv2.resize(v, (w // 2, h // 2))
    out = []
    for i in range(n):
        noisy = np.clip(y + rng.normal(0, 2, y.shape), 0, 255)
        i420 = np.concatenate([noisy, u.reshape(-1, w), v.reshape(-1, w)]).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts, frame.time_base = i, Fraction(1, 25)
        out.append(frame)
    return out


def per_sample(n: int) -> list[dict]:
    rows = []
    for w, h in SIZES:
        frames = _frames(w, h, 2 * n)
        diag = CameraDiagnoser("bench", DiagnosisSettings(interval_s=1.0), lambda e, j: None)
        costs = []
        for i in range(0, 2 * n, 2):
            t0 = time.thread_time()
            diag.tap(frames[i], float(i))  # due: copies the picture
            diag.tap(frames[i + 1], i + 0.2)  # next frame: measures the pair
            costs.append(time.thread_time() - t0)
        costs = costs[2:]
        rows.append(
            {
                "input": f"{w}x{h}",
                "median_ms": 1000 * statistics.median(costs),
                "p90_ms": 1000 * statistics.quantiles(costs, n=10)[-1],
                "at_10s_percent": 100 * statistics.median(costs) / 10.0,
            }
        )
    return rows


def encode_stream(seconds: float) -> list[AccessUnit]:
    """A camera-like 640x360 25 fps colour H.264 sub-stream."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 640, 360, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)
    enc.gop_size, enc.max_b_frames, enc.bit_rate = 50, 0, 500_000
    enc.options = {"preset": "veryfast", "tune": "zerolatency", "x264-params": "repeat-headers=1"}
    units = []
    base = _frames(640, 360, 50)
    for i in range(int(seconds * 25)):
        frame = base[i % 50]
        frame.pts = i
        for p in enc.encode(frame):
            units.append(AccessUnit(bytes(p), p.pts, p.dts, Fraction(1, 25), p.is_keyframe, i / 25))
    return units


def whole_cost(units: list[AccessUnit], interval_s: float, seconds: float) -> dict:
    hub = Hub("bench/sub")
    hub.set_info(StreamInfo("h264", 640, 360, 25.0))
    diag = CameraDiagnoser("bench", DiagnosisSettings(interval_s=interval_s), lambda e, j: None)
    worker = MotionWorker("bench", MotionSettings(fps=5), hub, lambda e, j: None, taps=[diag.tap])
    worker.start()
    for au in units:
        while hub.subscribers[0].qsize > 40:
            time.sleep(0.001)
        hub.publish(au)
    while hub.subscribers and hub.subscribers[0].qsize:
        time.sleep(0.01)
    time.sleep(0.3)
    worker.stop()
    return {
        "interval_s": interval_s,
        "samples": diag.samples,
        "diag_percent": 100 * diag.cpu_s / seconds,
        "worker_percent": 100 * worker.cpu_s / seconds,
    }


def decode_only(units: list[AccessUnit], seconds: float) -> float:
    ctx = av.CodecContext.create("h264", "r")
    ctx.thread_count = 1
    t0 = time.thread_time()
    for au in units:
        ctx.decode(av.Packet(au.data))
    return 100 * (time.thread_time() - t0) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 30 if args.quick else 100

    print(f"## Cost of one diagnosis sample (median of {n - 2} samples, thread CPU)\n")
    print("| input | median (ms) | p90 (ms) | at one sample per 10 s (% of one core) |")
    print("|---|---|---|---|")
    for r in per_sample(n):
        print(
            f"| {r['input']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['at_10s_percent']:.4f} |"
        )

    seconds = 30.0 if args.quick else 120.0
    units = encode_stream(seconds)
    decode = decode_only(units, seconds)
    print(f"\n## Cost per camera: 640x360 25 fps H.264, {seconds:.0f} s of stream\n")
    print(f"decode only (one thread): {decode:.2f} % of one core\n")
    print("| diagnosis interval | samples | diagnosis % of one core | worker % (decode + motion "
          "+ diagnosis) | diagnosis / decode |")  # fmt: skip
    print("|---|---|---|---|---|")
    for interval in (10.0, 1.0):
        r = whole_cost(units, interval, seconds)
        print(
            f"| {interval:.0f} s | {r['samples']} | {r['diag_percent']:.4f} "
            f"| {r['worker_percent']:.2f} | {r['diag_percent'] / decode:.4f} |"
        )

    seeds = 4 if args.quick else 10
    t0 = time.perf_counter()
    clips = default_clips(seeds)
    ours, ref = evaluate(clips, run_gateway), evaluate(clips, run_opencv)
    print(f"\n## Accuracy on {len(clips)} synthetic clips ({time.perf_counter() - t0:.0f} s)\n")
    print(format_table(ours, ref))
    quiet = sum(s.false_on_quiet for s in ours.values())
    print(f"\nfalse states on the quiet clips: ours {quiet}, "
          f"OpenCV reference {sum(s.false_on_quiet for s in ref.values())}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
