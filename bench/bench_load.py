"""Load: N concurrent WHEP viewers plus a steady API request rate against one gateway.

    .venv/bin/python bench/bench_load.py [--duration 60] [--viewers 50] [--rate 200]
                                         [--cameras 4] [--json out.json]

Processes (all on loopback): one ``gateway sim`` with ``--cameras`` cameras
(640x360, 25 fps, H.264, 1 s GOP), one ``gateway run`` with them as static
cameras (motion and recording off), and two receiver processes of aiortc WHEP
viewers (``bench/bench_relay.py``'s light receivers: SRTP decrypted, frames
counted, nothing decoded). The viewers are spread over the cameras.

While every viewer plays, ``--workers`` processes (aiohttp; one Python client
tops out well below 200 requests/s here) send API requests open-loop at
``--rate`` per second in all for ``--duration`` seconds (a mix of the calls an operator
page and a monitoring system make: camera list and detail, streams, tree,
events, relay sessions, metrics, health). Latency is measured from the moment a
request was due, so a stalled server shows as latency rather than a lower rate
(no coordinated omission). Errors: transport failures and non-2xx answers.

Reported: WHEP session set-up time (POST → 201, viewer-side), API p50/p99/max
latency and errors, the gateway's event-loop lag over the load minute (its
``looplag`` part, read from ``/metrics``), the achieved request rate, each
viewer's frame rate over the window (min/median against the source), gateway CPU
and RSS. The load generator shares the 2-core box with the gateway and the
receivers; figures are a lower bound for a dedicated box and vary with other work
on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_relay import Receivers, cpu_seconds  # noqa: E402

FPS = 25
BASE = "127.0.166.1"
ENDPOINTS = [
    # (weight, path) — what a video-wall page and a Prometheus scraper poll.
    (20, "/api/v1/cameras"),
    (15, "/api/v1/cameras/{cam}"),
    (15, "/api/v1/streams"),
    (10, "/api/v1/tree"),
    (15, "/api/v1/events?limit=50"),
    (5, "/api/v1/relay/sessions"),
    (5, "/metrics"),
    (15, "/api/v1/health"),
]


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _api_load(
    base_url: str, token: str, rate: float, duration: float, cameras: int, phase: float
) -> dict[str, Any]:
    """Open-loop requests at ``rate``/s; latency from when each request was due."""
    import aiohttp

    paths = [p for w, p in ENDPOINTS for _ in range(w)]
    latencies: list[float] = []
    by_path: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=128)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(
        base_url, headers=headers, connector=connector, timeout=timeout
    ) as http:

        async def one(i: int, due: float) -> None:
            cam = f"cam-{i % cameras + 1:02d}"
            path = paths[i % len(paths)].format(cam=cam)
            try:
                async with http.get(path) as r:
                    await r.read()
                    if not 200 <= r.status < 300:
                        errors[f"{r.status} {path}"] += 1
            except (aiohttp.ClientError, TimeoutError) as err:
                errors[f"{type(err).__name__} {path}"] += 1
            ms = (time.monotonic() - due) * 1000
            latencies.append(ms)
            by_path.setdefault(path.split("?")[0].replace(cam, "{id}"), []).append(ms)

        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic() + phase / rate
        n = int(rate * duration)
        for i in range(n):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.wait_for(asyncio.gather(*tasks), duration + 60)
        elapsed = time.monotonic() - start
    return {
        "n": n,
        "elapsed": elapsed,
        "latencies": latencies,
        "by_path": by_path,
        "errors": dict(errors),
    }


def _api_worker(args: tuple) -> dict[str, Any]:
    return asyncio.run(_api_load(*args))


def api_load(
    base_url: str, token: str, rate: float, duration: float, cameras: int, workers: int
) -> dict[str, Any]:
    """The request rate split over ``workers`` processes (one Python client tops out
    well below 200 requests/s on this box), merged."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    jobs = [
        (base_url, token, rate / workers, duration, cameras, k / workers) for k in range(workers)
    ]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        parts = list(pool.map(_api_worker, jobs))
    latencies = [x for part in parts for x in part["latencies"]]
    by_path: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for part in parts:
        for k, v in part["by_path"].items():
            by_path.setdefault(k, []).extend(v)
        errors.update(part["errors"])
    n = sum(part["n"] for part in parts)
    elapsed = max(part["elapsed"] for part in parts)
    return {
        "requests": n,
        "achieved_rate": round(n / elapsed, 1),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors.most_common(10)),
        "p50_ms": round(_pct(latencies, 50), 1),
        "p99_ms": round(_pct(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "per_path_p99_ms": {k: round(_pct(v, 99), 1) for k, v in sorted(by_path.items())},
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60, help="seconds of API load (default 60)")
    ap.add_argument("--viewers", type=int, default=50, help="concurrent WHEP viewers (default 50)")
    ap.add_argument("--rate", type=float, default=200, help="API requests per second (default 200)")
    ap.add_argument("--cameras", type=int, default=4, help="simulated cameras (default 4)")
    ap.add_argument("--workers", type=int, default=3, help="load generator processes (default 3)")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)

    from tests.support import GatewayProcess, SimProcess, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    sim = SimProcess(
        tmp,
        "--cameras", str(args.cameras), "--base", BASE,
        "--http-port", str(free_port(BASE)), "--rtsp-port", str(free_port(BASE)),
        "--size", "640x360", "--sub-size", "320x180", "--fps", str(FPS), "--gop", str(FPS),
        "--bitrate", "800", "--no-wsd",
    )  # fmt: skip
    gw = None
    receivers: list[Receivers] = []
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "args": vars(args),
    }
    try:
        gw = GatewayProcess(
            tmp,
            {
                "cameras": [{"id": c["id"], "rtsp_url": c["rtsp_main"]} for c in sim.cameras],
                "relay": {"interfaces": ["127.0.0.1"], "max_sessions": 400},
                "motion": {"enabled": False},
                "discovery": {"interval_s": 0},
                "logging": {"level": "WARNING"},
            },
        )
        # Warm every camera's ingest so set-up times measure the relay, not RTSP.
        for c in sim.cameras:
            gw.client.get(f"/api/v1/cameras/{c['id']}/snapshot.jpg")
        receivers = [Receivers(gw.base_url, gw.token or "") for _ in range(2)]
        for r in receivers:
            r.counts()  # the process is up and has imported aiortc
        setup_ms: list[float] = []
        print(f"starting {args.viewers} viewers …", flush=True)
        for i in range(args.viewers):
            cam = sim.cameras[i % len(sim.cameras)]["id"]
            t0 = time.monotonic()
            receivers[i % 2].add(1, cam)
            setup_ms.append((time.monotonic() - t0) * 1000)
        results["whep_setup_ms"] = {
            "p50": round(_pct(setup_ms, 50), 1),
            "p99": round(_pct(setup_ms, 99), 1),
            "max": round(max(setup_ms), 1),
        }
        time.sleep(3)  # every viewer past its first keyframe
        sessions = gw.client.get("/api/v1/relay/sessions").json()
        results["sessions_open"] = len(sessions.get("sessions", []))

        print(f"API load {args.rate}/s for {args.duration}s …", flush=True)
        before = [r.counts() for r in receivers]
        c0, t0 = cpu_seconds(gw.popen.pid), time.monotonic()
        results["api"] = api_load(
            gw.base_url, gw.token or "", args.rate, args.duration, len(sim.cameras), args.workers
        )
        c1, t1 = cpu_seconds(gw.popen.pid), time.monotonic()
        # The gateway's own loop-lag figures cover its last minute: the load window
        # when --duration is 60 (the default).
        results["loop_lag_ms"] = _loop_lag_ms(gw.client.get("/metrics").text)
        print("API load done; reading the viewers' counters …", flush=True)
        after = [r.counts() for r in receivers]
        rates = []
        lost = 0
        for b, a in zip(before, after, strict=True):
            rates += [(y - x) / (t1 - t0) for x, y in zip(b["frames"], a["frames"], strict=False)]
            lost += a["lost"] - b["lost"]
        results["viewers"] = {
            "count": len(rates),
            "fps_min": round(min(rates), 2) if rates else None,
            "fps_median": round(statistics.median(rates), 2) if rates else None,
            "source_fps": FPS,
            "rtp_lost": lost,
        }
        results["gateway"] = {
            "cores": round((c1 - c0) / (t1 - t0), 2),
            "rss_mb": round(_rss_mb(gw.popen.pid), 0),
        }
        still = gw.client.get("/api/v1/relay/sessions").json()
        results["sessions_open_after"] = len(still.get("sessions", []))
    finally:
        for r in receivers:
            r.stop()
        if gw is not None:
            gw.stop()
        sim.stop()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


def _loop_lag_ms(text: str) -> dict[str, float]:
    """p50/p99/max event-loop lag (ms) from the gateway's /metrics."""
    out = {}
    for line in text.splitlines():
        for key, prefix in (
            ("p50", 'gateway_event_loop_lag_seconds{quantile="0.5"}'),
            ("p99", 'gateway_event_loop_lag_seconds{quantile="0.99"}'),
            ("max", "gateway_event_loop_lag_max_seconds"),
        ):
            if line.startswith(prefix + " "):
                out[key] = round(float(line.split()[-1]) * 1000, 1)
    return out


def report(r: dict[str, Any]) -> str:
    a, v, g, s = r["api"], r["viewers"], r["gateway"], r["whep_setup_ms"]
    lag = r.get("loop_lag_ms", {})
    return "\n".join(
        [
            f"| {r['args']['viewers']} WHEP viewers on {r['args']['cameras']} cameras "
            f"(640x360 {FPS} fps) + {r['args']['rate']:.0f} API req/s for "
            f"{r['args']['duration']:.0f} s | |",
            "|---|---|",
            f"| WHEP set-up (POST → answer, viewer side) | p50 {s['p50']} ms, p99 {s['p99']} ms |",
            f"| Sessions open before / after the load | {r['sessions_open']} / "
            f"{r['sessions_open_after']} |",
            f"| API requests (achieved rate) | {a['requests']} ({a['achieved_rate']}/s) |",
            f"| API errors | {a['errors']} {a['error_kinds'] or ''} |",
            f"| API latency p50 / p99 / max | {a['p50_ms']} / {a['p99_ms']} / {a['max_ms']} ms |",
            f"| Viewer frame rate min / median (source {FPS}) | {v['fps_min']} / "
            f"{v['fps_median']} fps, {v['rtp_lost']} RTP packets lost |",
            f"| Gateway CPU / RSS | {g['cores']} cores / {g['rss_mb']:.0f} MB |",
            f"| Event-loop lag p50 / p99 / max (last minute) | {lag.get('p50')} / "
            f"{lag.get('p99')} / {lag.get('max')} ms |",
        ]
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
