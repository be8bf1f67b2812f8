"""Cascade benchmarks: latency added per hop, and village egress with 1 vs 5 city viewers.

    .venv/bin/python bench/bench_cascade.py            # ~1.5 min
    .venv/bin/python bench/bench_cascade.py --quick    # shorter windows

Three gateways run as processes on loopback (city ← town ← village) with one
simulated camera (640x360, 25 fps, GOP 25) under the village.

1. Latency per hop: three WHEP viewers (aiortc, decoding every frame) play the same
   camera at the same time: at the village (0 hops), the town (1 hop) and the city
   (2 hops). Each decoded frame's barcode gives glass-to-glass latency; the village
   viewer is the reference measured in the same run, and (town − village) and
   (city − town) medians are the latency each hop adds.
2. Village egress: bytes the village's uplink sends while 1, then 5, then 1 viewer
   watch the camera at the city, per window; the ratio 5/1 should be ~1.0 (one
   upstream stream per camera per hop whatever the number of viewers above).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cascade_support import all_cameras, start_levels, wait_for
from tests.relay_helpers import WhepClient
from tests.support import GatewayProcess, SimProcess

CAM = "town-a/village-1/cam-01"


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def _viewers(gw: GatewayProcess, path: str, n: int, decode_every: int) -> list[WhepClient]:
    headers = {"Authorization": f"Bearer {gw.token}"} if gw.token else {}
    http = httpx.AsyncClient(base_url=gw.base_url, headers=headers, timeout=30)
    out = []
    for _ in range(n):
        v = WhepClient(http, f"/api/v1/streams/{path}/whep", decode_every=decode_every)
        r = await v.start()
        if r.status_code != 201:
            raise RuntimeError(f"WHEP at {gw.base_url} for {path}: {r.status_code} {r.text}")
        out.append(v)
    return out


async def _stop(viewers: list[WhepClient]) -> None:
    for v in viewers:
        await v.stop()
    if viewers:
        await viewers[0].http.aclose()


async def latency(lv, seconds: float) -> dict[str, list[float]]:
    groups = {
        "village": await _viewers(lv.village, "cam-01", 1, 1),
        "town": await _viewers(lv.town, "village-1/cam-01", 1, 1),
        "city": await _viewers(lv.city, CAM, 1, 1),
    }
    try:
        for vs in groups.values():
            if not await vs[0].wait_frames(10, 30):
                raise RuntimeError("a viewer got no video")
        for vs in groups.values():
            vs[0].received.latencies_ms.clear()
        await asyncio.sleep(seconds)
        return {k: list(vs[0].received.latencies_ms) for k, vs in groups.items()}
    finally:
        for vs in groups.values():
            await _stop(vs)


def _village_bytes(lv) -> int:
    return int(lv.village.client.get("/api/v1/cascade").json()["uplink"]["bytes_out"])


async def egress(lv, n: int, seconds: float) -> tuple[float, int]:
    viewers = await _viewers(lv.city, CAM, n, 25)
    try:
        for v in viewers:
            if not await v.wait_frames(10, 30):
                raise RuntimeError("a city viewer got no video")
        b0, t0 = _village_bytes(lv), time.monotonic()
        await asyncio.sleep(seconds)
        b1, t1 = _village_bytes(lv), time.monotonic()
        frames = sum(v.received.frames for v in viewers)
        return (b1 - b0) * 8 / (t1 - t0), frames
    finally:
        await _stop(viewers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    window = 6.0 if args.quick else 15.0
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp_s:
        tmp = Path(tmp_s)
        procs: list = []
        try:
            sim = SimProcess(
                tmp,
                "--cameras",
                "1",
                "--base",
                "127.0.90.1",
                "--size",
                "640x360",
                "--fps",
                "25",
                "--gop",
                "25",
                name="sim",
            )
            procs.append(sim)
            cam = sim.cameras[0]
            url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"

            def start(cfg, name):
                gw = GatewayProcess(tmp, {**cfg, "logging": {"level": "WARNING"}}, name=name)
                procs.append(gw)
                return gw

            lv = start_levels(
                start,
                village_extra={
                    "cameras": [{"id": "cam-01", "rtsp_url": url}],
                    "motion": {"enabled": False},
                },
            )
            wait_for(
                lambda: CAM in all_cameras(lv.city.client.get("/api/v1/tree").json()),
                30,
                "the camera at the city",
            )

            lat = asyncio.run(latency(lv, window))
            med = {k: statistics.median(v) if v else float("nan") for k, v in lat.items()}
            print("## Latency (barcode, glass-to-glass, aiortc viewer decoding every frame)")
            print(
                f"window {window:.0f} s; samples: "
                + ", ".join(f"{k} {len(v)}" for k, v in lat.items())
            )
            print("| viewer at | hops | p50 ms | p90 ms |")
            print("|---|---|---|---|")
            for hops, k in enumerate(("village", "town", "city")):
                print(f"| {k} | {hops} | {med[k]:.1f} | {p(lat[k], 0.9):.1f} |")
            print(f"added by village→town hop (p50): {med['town'] - med['village']:.1f} ms")
            print(f"added by town→city hop (p50): {med['city'] - med['town']:.1f} ms")
            print(f"added per hop, mean of both (p50): {(med['city'] - med['village']) / 2:.1f} ms")

            runs = []
            for n in (1, 5, 1):
                bps, frames = asyncio.run(egress(lv, n, window))
                runs.append((n, bps, frames))
                time.sleep(1)
            print("\n## Village egress (uplink bytes) while N viewers watch at the city")
            print("| viewers at city | village uplink kbit/s | frames decoded at city (1 in 25) |")
            print("|---|---|---|")
            for n, bps, frames in runs:
                print(f"| {n} | {bps / 1000:.0f} | {frames} |")
            one = statistics.median([bps for n, bps, _ in runs if n == 1])
            five = next(bps for n, bps, _ in runs if n == 5)
            print(f"ratio 5 viewers / 1 viewer: {five / one:.2f}")
        finally:
            for proc in reversed(procs):
                proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
