"""ONVIF events benchmark: camera alarm → gateway event delay, and motion CPU both ways.

    .venv/bin/python bench/bench_onvif_events.py             # 40 alarms + CPU (~1.5 min)
    .venv/bin/python bench/bench_onvif_events.py --quick     # 10 alarms, no CPU part

1. Delay: a real ``gateway sim`` raises motion through its control API; a real
   town ``gateway run`` (camera with ``motion.source: camera``) holds a PullPoint
   subscription and publishes ``camera_motion``, which its parent, a city gateway,
   receives through the cascade; measured from just before the control call to the
   SSE message's arrival at the town and at the city. p50/p95/max over N alarms.
2. CPU per camera (gateway process, user+system, % of one core over 20 s) for
   ``motion.source: camera`` (no decoding, one long poll) against ``gateway``
   (the 640x360 25 fps sub-stream decoded and analysed at 5 fps).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cascade_support import issue_token_api
from tests.support import GatewayProcess, SimProcess, free_port
from tests.test_motion_e2e import SseReader


def start(
    tmp: Path, source: str, name: str, parent: dict | None = None
) -> tuple[SimProcess, GatewayProcess]:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    sim = SimProcess(
        tmp,
        *("--base", base, "--http-port", str(free_port(base)), "--rtsp-port"),
        *(str(free_port(base)), "--size", "1280x720", "--sub-size", "640x360", "--no-wsd"),
        name=f"sim-{name}",
    )
    cam = sim.cameras[0]
    onvif = {k: cam[k] for k in ("username", "password")}
    onvif.update(host=cam["address"], port=cam["http_port"])
    motion = {"source": source, "fps": 5}
    config: dict = {"cameras": [{"id": "cam-01", "onvif": onvif, "motion": motion}]}
    if parent:
        config["cascade"] = {"level": "town", "id": "town-a", "parent": parent}
    gw = GatewayProcess(tmp, config, name=f"gw-{name}")
    return sim, gw


def wait_subscribed(gw: GatewayProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = gw.client.get("/api/v1/cameras/cam-01").json().get("camera_events") or {}
        if state.get("state") == "subscribed":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no subscription: {state}")
        time.sleep(0.1)


def first_of_new_event(sse: SseReader, seen: set[str], **match: object) -> tuple[float, str]:
    """Arrival and id of the first message of an event not seen yet (later ones: snapshot, end)."""
    while True:
        arrived, _, ident, _ = sse.next(10.0, end=None, **match)
        if ident not in seen:
            seen.add(ident)
            return arrived, ident


def delays(tmp: Path, n: int) -> tuple[list[float], list[float]]:
    city = GatewayProcess(tmp, {"cascade": {"level": "city", "id": "city"}}, name="city")
    parent = {"url": city.base_url, "token": issue_token_api(city, "town-a")}
    sim, gw = start(tmp, "camera", "delay", parent)
    try:
        town_sse = SseReader(gw.base_url + "/api/v1/events/stream?type=camera_motion", gw.token)
        city_sse = SseReader(city.base_url + "/api/v1/events/stream?type=camera_motion", city.token)
        for sse in (town_sse, city_sse):
            sse.start()
            if not sse.connected.wait(10):
                raise TimeoutError("SSE did not open")
        wait_subscribed(gw)
        time.sleep(1.0)
        at_town, at_city = [], []
        seen_town: set[str] = set()
        seen_city: set[str] = set()
        for _ in range(n):
            t0 = time.time()
            sim.motion("cam-01", True)
            arrived, ident = first_of_new_event(town_sse, seen_town, camera="cam-01")
            at_town.append(arrived - t0)
            arrived, _ = first_of_new_event(city_sse, seen_city, id=ident)
            at_city.append(arrived - t0)
            sim.motion("cam-01", False)
            while town_sse.next(10.0, id=ident)[3]["end"] is None:
                pass
            time.sleep(0.1)
        return at_town, at_city
    finally:
        gw.stop()
        sim.stop()
        city.stop()


def figures(name: str, values: list[float]) -> str:
    ds = sorted(values)
    p95 = ds[min(len(ds) - 1, round(0.95 * (len(ds) - 1)))]
    return (
        f"camera alarm -> SSE at the {name} over ONVIF PullPoint, n={len(ds)}: "
        f"p50 {statistics.median(ds) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {ds[-1] * 1000:.0f} ms"
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(tmp: Path, source: str, seconds: float = 20.0) -> float:
    sim, gw = start(tmp, source, f"cpu-{source}")
    try:
        if source == "camera":
            wait_subscribed(gw)
        time.sleep(8)  # start-up, ingest connect, first keyframes
        c0, t0 = cpu_seconds(gw.popen.pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (cpu_seconds(gw.popen.pid) - c0) / (time.monotonic() - t0)
    finally:
        gw.stop()
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, default=None, help="alarms to time")
    args = parser.parse_args()
    n = args.n or (10 if args.quick else 40)
    with tempfile.TemporaryDirectory(prefix="bench-onvif-events-") as tmpdir:
        tmp = Path(tmpdir)
        at_town, at_city = delays(tmp, n)
        print(figures("town (the camera's gateway)", at_town))
        print(figures("city (one cascade hop up)", at_city))
        if not args.quick:
            for source in ("camera", "gateway"):
                pct = cpu_percent(tmp, source)
                print(f"gateway CPU with motion.source={source}: {pct:.1f} % of one core")


if __name__ == "__main__":
    main()
