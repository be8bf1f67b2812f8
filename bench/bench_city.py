"""City scale (issue 15): 1 city, 20 towns, 100 villages, 2,000 cameras on one box.

    .venv/bin/python bench/bench_city.py                      # full size, ~4 min
    .venv/bin/python bench/bench_city.py --towns 4 --villages 5 --cameras 20 --event-seconds 10

The city and every town are real ``gateway run`` processes; the 100 villages are real
cascade uplinks (own identity, token, SQLite outbox, catalog) in a few processes
(tests/city_swarm.py). Printed, in one run:

1. seconds until the city's tree holds every camera online after the villages start;
2. a camera's status change at a village → the city's tree (p50/p99 over N changes);
3. 1,000 events/s from the villages for 60 s: lost / duplicated / out of order per
   village at the city, and end-to-end latency (village publish → city SSE) p50/p99;
4. the city's /api/v1/tree and /api/v1/events p50/p99 with 2,000 cameras;
5. the city restarted under that event load: seconds from its process start until the
   tree is whole again, the CPU it spent until then, and lost events after it;
6. the city's RSS and CPU seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.city_support import (
    County,
    api_latency,
    check_events,
    city_config,
    city_motion_events,
    p99,
    published_counts,
    start_county,
    status_change_latency,
    wait_converged,
)
from tests.support import GatewayProcess

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class SseLatency:
    """Village publish → city SSE delivery, from each event's ``data.t``."""

    def __init__(self, city: GatewayProcess) -> None:
        self.city = city
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.city.token}"}
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "GET",
                self.city.base_url + "/api/v1/events/stream?type=motion",
                headers=headers,
                timeout=None,
            ) as r,
        ):
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data: "):
                    data = json.loads(line[6:]).get("data", {})
                    if "t" in data:
                        self.latencies.append(time.time() - data["t"])

    def stop(self) -> None:
        self._stop.set()


def _events(county: County, rate: float, seconds: float) -> None:
    """All swarms publish at once, ``rate`` per second in all."""
    share = rate / len(county.swarms)
    threads = [
        threading.Thread(target=s.ask, args=({"op": "events", "rate": share, "seconds": seconds},))
        for s in county.swarms
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _wait_events(county: County, timeout: float) -> dict[str, int]:
    published = published_counts(county)
    deadline = time.monotonic() + timeout
    result: dict[str, int] = {}
    while time.monotonic() < deadline:
        result = check_events(city_motion_events(county), published)
        if result["lost"] == 0:
            break
        time.sleep(1)
    return {**result, "published": sum(published.values())}


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any], name: str = "gw", **kw: Any) -> GatewayProcess:
        proc = GatewayProcess(tmp, config, name=name, **kw)
        started.append(proc)
        return proc

    out: dict[str, Any] = {}
    county = start_county(
        start,
        tmp,
        towns=args.towns,
        villages_per_town=args.villages,
        cameras_per_village=args.cameras,
        swarms=args.swarms,
    )
    try:
        since_children = time.monotonic() - county.timings["children_started_at"]
        took = wait_converged(county, timeout=300)
        out["cameras"] = county.cameras
        out["tree_after_children_start_s"] = round(since_children + took, 2)

        lat = []
        villages = sorted(county.village_town)
        for i in range(args.status_changes):
            village = villages[(i * 7) % len(villages)]
            camera = f"cam-{(i * 3) % args.cameras:03d}"
            lat.append(status_change_latency(county, village, camera, "offline"))
            lat.append(status_change_latency(county, village, camera, "online"))
        out["status_change_s"] = {"p50": statistics.median(lat), "p99": p99(lat), "n": len(lat)}

        sse = SseLatency(county.city)
        time.sleep(1)
        cpu0, t0 = _cpu_seconds(county.city.popen.pid), time.monotonic()
        _events(county, args.event_rate, args.event_seconds)
        result = _wait_events(county, timeout=300)
        out["city_cpu_under_events_cores"] = round(
            (_cpu_seconds(county.city.popen.pid) - cpu0) / (time.monotonic() - t0), 3
        )
        sse.stop()
        if sse.latencies:
            out["event_latency_s"] = {
                "p50": statistics.median(sse.latencies),
                "p99": p99(sse.latencies),
                "n": len(sse.latencies),
            }
        out["events"] = result

        out["api_tree"] = api_latency(county, "/api/v1/tree", args.api_rounds)
        out["api_events"] = api_latency(county, "/api/v1/events?limit=100", args.api_rounds)
        out["city_rss_mb"] = round(_rss_mb(county.city.popen.pid), 1)

        # restart the city while the villages keep publishing
        load = threading.Thread(target=_events, args=(county, args.event_rate, args.restart_load_s))
        load.start()
        time.sleep(args.restart_load_s / 3)
        port = county.city.port
        county.city.stop()
        t_restart = time.monotonic()
        county.city = start(city_config(), name="city", port=port)  # returns once it answers
        pid = county.city.popen.pid
        out["city_restart_to_http_s"] = round(time.monotonic() - t_restart, 2)
        converged = None
        while converged is None and time.monotonic() < t_restart + 300:
            with contextlib.suppress(AssertionError):
                wait_converged(county, timeout=0.2)
                converged = time.monotonic() - t_restart
        cpu = _cpu_seconds(pid)
        load.join()
        out["tree_after_city_restart_s"] = converged and round(converged, 2)
        # CPU the new city process spent from its start until the tree was whole
        out["city_cpu_until_whole_s"] = round(cpu, 2)
        out["events_after_restart"] = _wait_events(county, timeout=300)
    finally:
        for swarm in county.swarms:
            swarm.stop()
        for proc in reversed(started):
            proc.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--towns", type=int, default=20)
    ap.add_argument("--villages", type=int, default=5, help="per town")
    ap.add_argument("--cameras", type=int, default=20, help="per village")
    ap.add_argument("--swarms", type=int, default=4, help="processes for the villages")
    ap.add_argument("--status-changes", type=int, default=25)
    ap.add_argument("--event-rate", type=float, default=1000)
    ap.add_argument("--event-seconds", type=float, default=60)
    ap.add_argument("--restart-load-s", type=float, default=20)
    ap.add_argument("--api-rounds", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-city-") as tmp:
        out = run(args, Path(tmp))
    print(json.dumps(out, indent=2, ensure_ascii=False, default=float))


if __name__ == "__main__":
    main()
