"""Motion benchmarks: detector cost per frame, accuracy, and whole cost per camera.

    .venv/bin/python bench/bench_motion.py            # everything (~2 min)
    .venv/bin/python bench/bench_motion.py --quick    # fewer frames, one clip seed

1. Cost per analysed frame at 360p, 720p and 1080p input, ours against the
   textbook OpenCV pipeline (resize → GaussianBlur → accumulateWeighted → absdiff →
   threshold → dilate → findContours) at the same working size, interleaved in
   the same run; medians and the ratio.
2. Event-level precision/recall of both on the accuracy clips.
3. Whole motion cost of one camera including decode: a 640x360 25 fps H.264
   stream (GOP 50, ~500 kbit/s) through ``MotionWorker`` at the configured analysis
   rates; worker-thread CPU time over stream time = % of one core.
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

from gateway.config import MotionSettings
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.motion.accuracy import OpenCVReference, run_clip, score, totals
from gateway.motion.clips import Clip, Mover, catalogue
from gateway.motion.detector import FrameDiffDetector
from gateway.motion.worker import MotionWorker
from gateway.streams.hub import Hub

SIZES = [(640, 360), (1280, 720), (1920, 1080)]


def strided(frames: list[np.ndarray], pad: int = 64) -> list[np.ndarray]:
    """Like decoded planes: rows longer than the picture (line_size > width)."""
    out = []
    for y in frames:
        buf = np.zeros((y.shape[0], y.shape[1] + pad), np.uint8)
        buf[:, : y.shape[1]] = y
        out.append(buf[:, : y.shape[1]])
    return out


def per_frame(n: int) -> list[dict]:
    rows = []
    for w, h in SIZES:
        mover = Mover(t0=1.0, t1=1.0 + n / 5.0, y=0.5, w=0.08, h=0.25, contrast=35)
        clip = Clip("bench", n / 5.0 + 1.0, [mover], size=(w, h), noise=4.0)
        frames = strided([y for _, y in clip.frames()])
        ours, ref = FrameDiffDetector(fps=5), OpenCVReference()
        boxed = FrameDiffDetector(fps=5)
        t_ours: list[float] = []
        t_boxed: list[float] = []
        t_ref: list[float] = []
        for y in frames[:5]:  # warm-up: geometry, background
            ours.detect(y)
            boxed.detect(y)
            ref.detect(y)
        for y in frames[5:]:
            t0 = time.perf_counter_ns()
            ours.detect(y)
            t1 = time.perf_counter_ns()
            ref.detect(y)
            t2 = time.perf_counter_ns()
            _ = boxed.detect(y).boxes  # boxes on every frame, as the reference's contours
            t3 = time.perf_counter_ns()
            t_ours.append((t1 - t0) / 1e6)
            t_ref.append((t2 - t1) / 1e6)
            t_boxed.append((t3 - t2) / 1e6)
        mo, mr = statistics.median(t_ours), statistics.median(t_ref)
        rows.append(
            {
                "input": f"{w}x{h}",
                "ours_ms": mo,
                "ours_p90_ms": sorted(t_ours)[int(0.9 * len(t_ours))],
                "boxes_ms": statistics.median(t_boxed),
                "opencv_ms": mr,
                "ratio": mo / mr,
                "frames": len(t_ours),
            }
        )
    return rows


def accuracy(seeds: list[int]) -> dict[str, dict]:
    clips = [c for s in seeds for c in catalogue(seed=s)]
    out = {}
    for name, factory in (
        ("ours", lambda s, fps: FrameDiffDetector(s, fps=fps)),
        ("opencv (threshold 12)", lambda s, fps: OpenCVReference(s, fps)),
        ("opencv (threshold 25)", lambda s, fps: OpenCVReference(s, fps, threshold=25)),
    ):
        scores = [score(c, run_clip(c, factory)) for c in clips]
        out[name] = totals(scores)
        out[name]["per_kind"] = {}
        for s in scores:
            kind = s.clip
            agg = out[name]["per_kind"].setdefault(kind, [0, 0, 0, 0])
            agg[0] += len(s.events)
            agg[1] += s.true_events
            agg[2] += len(s.truth)
            agg[3] += s.found
    return out


def encode_stream(seconds: float) -> list[AccessUnit]:
    """A camera-like 640x360 25 fps H.264 sub-stream with a passer-by now and then."""
    movers = [Mover(2 + 6 * i, 5 + 6 * i, 0.55, 0.08, 0.25, 35) for i in range(int(seconds // 6))]
    clip = Clip("stream", seconds, movers, fps=25.0, noise=3.0)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 640, 360, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)
    enc.gop_size, enc.max_b_frames, enc.bit_rate = 50, 0, 500_000
    enc.options = {"preset": "veryfast", "tune": "zerolatency", "x264-params": "repeat-headers=1"}
    chroma = np.full((180 * 320 * 2,), 128, np.uint8)
    units = []
    for i, (_, y) in enumerate(clip.frames()):
        yuv = np.concatenate([y.reshape(-1), chroma]).reshape(540, 640)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        for p in enc.encode(frame):
            units.append(AccessUnit(bytes(p), p.pts, p.dts, Fraction(1, 25), p.is_keyframe, i / 25))
    return units


def whole_cost(units: list[AccessUnit], fps: float, seconds: float) -> dict:
    hub = Hub("bench/sub")
    hub.set_info(StreamInfo("h264", 640, 360, 25.0))
    worker = MotionWorker("bench", MotionSettings(fps=fps), hub, lambda e, j: None)
    worker.start()
    for au in units:
        while hub.subscribers[0].qsize > 40:
            time.sleep(0.001)
        hub.publish(au)
    while hub.subscribers and hub.subscribers[0].qsize:
        time.sleep(0.01)
    time.sleep(0.3)
    worker.stop()
    pct = 100 * worker.cpu_s / seconds
    return {
        "analysis_fps": fps,
        "decoded": worker.decoded,
        "analysed": worker.analysed,
        "cpu_s": worker.cpu_s,
        "percent_core": pct,
        "cameras_per_core": 100 / pct if pct else float("inf"),
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
    n = 100 if args.quick else 400

    print(f"## Detector cost per analysed frame (median of {n - 4} frames)\n")
    print(
        "| input | ours (ms) | ours p90 (ms) | ours, boxes every frame (ms) "
        "| OpenCV reference (ms) | ours / OpenCV |"
    )
    print("|---|---|---|---|---|---|")
    for r in per_frame(n):
        print(
            f"| {r['input']} | {r['ours_ms']:.3f} | {r['ours_p90_ms']:.3f} | "
            f"{r['boxes_ms']:.3f} | {r['opencv_ms']:.3f} | {r['ratio']:.2f} |"
        )

    seeds = [7] if args.quick else [7, 8]
    acc = accuracy(seeds)
    print(f"\n## Event-level accuracy on the generated clips (seeds {seeds})\n")
    print("| detector | events | truth | precision | recall | false events on quiet clips |")
    print("|---|---|---|---|---|---|")
    for name, t in acc.items():
        print(
            f"| {name} | {t['events']} | {t['truth']} | {t['precision']:.3f} | "
            f"{t['recall']:.3f} | {t['quiet_false_events']} |"
        )
    print("\nper clip (events, true events, truth, found): " + " vs ".join(acc) + "\n")
    for kind in acc["ours"]["per_kind"]:
        others = " vs ".join(str(acc[name]["per_kind"][kind]) for name in acc)
        print(f"- {kind}: {others}")

    seconds = 20.0 if args.quick else 60.0
    units = encode_stream(seconds)
    print(f"\n## Whole motion cost per camera (640x360 H.264 25 fps, {seconds:.0f} s of stream)\n")
    print(f"decode only, every frame: {decode_only(units, seconds):.2f} % of one core\n")
    print("| analysis fps | decoded | analysed | % of one core | cameras per core |")
    print("|---|---|---|---|---|")
    for fps in (5.0, 10.0):
        r = whole_cost(units, fps, seconds)
        print(
            f"| {fps:g} | {r['decoded']} | {r['analysed']} | {r['percent_core']:.2f} | "
            f"{r['cameras_per_core']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
