"""Streams benchmark: CPU per 1080p25 camera stream, passthrough vs transcode.

    .venv/bin/python bench/bench_transcode.py [--window 8] [--rounds 3]

The cameras are ``tests.rtsp_support`` servers in child processes, looping a
pre-encoded 1080p25 clip (4 Mbit/s, 1 s GOP), so serving costs this process nothing.
In this process, one :class:`StreamManager` and a reader per subscriber that takes
every access unit (as the relay's passthrough does, without the network).

Cases, each measured ``--rounds`` times over ``--window`` seconds, median reported:

- ``idle``: the manager running, nothing leased (the reference floor);
- ``passthrough``: H.264 ingest + hub fan-out to 1 subscriber (then 10 subscribers);
- ``transcode h264``: H.265 1080p ingest, decode, encode 1080p H.264 (``variant="h264"``);
- ``transcode low``: H.264 1080p ingest, decode, scale, encode 640×360 (``variant="low"``).

CPU is this process's user+system time (all threads) over the window, minus idle,
in percent of one core. The machine is shared and has 2 cores: treat figures within
~20 % of each other as equal and compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config import Settings  # noqa: E402
from gateway.streams.manager import StreamManager  # noqa: E402


def start_camera(codec: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rtsp_support", "--codec", codec, "--size", "1920x1080"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)["url"]


def cpu() -> float:
    t = os.times()
    return t.user + t.system


async def reader(sub: Any, counter: list[int]) -> None:
    try:
        while True:
            await sub.get()
            counter[0] += 1
    except Exception:
        return


async def measure(
    window: float, rounds: int, warmup: float, counter: list[int] | None = None
) -> list[float]:
    """CPU samples; ``counter[1:3]`` gets the units read and seconds after warm-up."""
    await asyncio.sleep(warmup)
    if counter is not None:
        counter[1:] = [counter[0], time.monotonic()]
    out = []
    for _ in range(rounds):
        c0, t0 = cpu(), time.monotonic()
        await asyncio.sleep(window)
        out.append(100 * (cpu() - c0) / (time.monotonic() - t0))
    return out


async def case(
    mgr: StreamManager, camera: str, variant: str | None, subscribers: int, args: Any
) -> dict[str, Any]:
    lease = mgr.acquire(camera, variant=variant, consumer="bench")
    counter = [0, 0, 0.0]
    subs = [lease.hub.subscribe(f"bench-{i}", maxsize=240) for i in range(subscribers)]
    tasks = [asyncio.create_task(reader(s, counter)) for s in subs]
    samples = await measure(args.window, args.rounds, args.warmup, counter)
    read, elapsed = counter[0] - counter[1], time.monotonic() - counter[2]
    row = next(r for r in mgr.stats() if r["key"] == lease.key)
    for task in tasks:
        task.cancel()
    for s in subs:
        s.close()
    lease.release()
    await asyncio.sleep(args.linger + 0.5)  # let it stop before the next case
    return {
        "samples": samples,
        "cpu": statistics.median(samples),
        "fps_out": read / max(1, subscribers) / elapsed,
        "dropped": row["dropped"],
        "source": row["source"],
    }


async def run(args: argparse.Namespace) -> None:
    h264, h264_url = start_camera("h264")
    hevc, hevc_url = start_camera("hevc")
    urls = {"cam-h264": h264_url, "cam-h265": hevc_url}
    settings = Settings(streams={"linger_s": args.linger})
    mgr = StreamManager(settings, url_resolver=lambda cam, profile: urls.get(cam))
    await mgr.start()
    try:
        idle = statistics.median(await measure(args.window, args.rounds, 0.5))
        results = {
            "passthrough x1": await case(mgr, "cam-h264", None, 1, args),
            "passthrough x10": await case(mgr, "cam-h264", None, 10, args),
            "transcode h264 (H.265 1080p -> H.264 1080p)": await case(
                mgr, "cam-h265", "h264", 1, args
            ),
            "transcode low (H.264 1080p -> 640x360)": await case(mgr, "cam-h264", "low", 1, args),
        }
    finally:
        await mgr.stop()
        for proc in (h264, hevc):
            proc.terminate()
            proc.wait(5)
    print(f"idle floor: {idle:.2f} % of one core (subtracted below)")
    print(f"{'case':46} {'CPU %':>7} {'fps out':>8} {'hub drop':>8} {'enc drop':>8}")
    net = {}
    for name, r in results.items():
        net[name] = max(0.01, r["cpu"] - idle)
        enc_drop = r["source"].get("dropped", 0)
        print(f"{name:46} {net[name]:7.2f} {r['fps_out']:8.1f} {r['dropped']:8d} {enc_drop:8d}")
    base = net["passthrough x1"]
    print()
    for name, value in net.items():
        if name != "passthrough x1":
            print(f"{name:46} = {value / base:6.1f} x passthrough x1")
    extra = (net["passthrough x10"] - base) / 9
    print(f"each extra subscriber (2nd..10th): {extra:.3f} % of one core")
    print(f"passthrough / transcode h264: 1/{net[list(net)[2]] / base:.0f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
    print(json.dumps({k: {"cpu": round(v, 3)} for k, v in net.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", type=float, default=8.0, help="seconds per sample")
    parser.add_argument("--rounds", type=int, default=3, help="samples per case (median)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before sampling")
    parser.add_argument("--linger", type=float, default=0.5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
