"""A county of real gateways for the city-scale test and bench (issue 15).

The city and every town are real ``gateway run`` processes; the villages are real
cascade uplinks, many to a process (:mod:`tests.city_swarm`). Everything speaks the
real protocol over loopback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cascade_support import all_cameras, issue_token_api
from tests.support import GatewayProcess, Proc

BEAT = {"heartbeat_s": 2.0, "offline_after_s": 6.0}


class SwarmProcess(Proc):
    """``python -m tests.city_swarm`` with its villages; :meth:`ask` sends a command."""

    def __init__(self, tmp: Path, villages: list[dict[str, Any]], name: str = "swarm") -> None:
        spec = tmp / f"{name}.json"
        data = {"villages": villages, "data_dir": str(tmp / f"{name}-data")}
        spec.write_text(json.dumps(data), encoding="utf-8")
        super().__init__([sys.executable, "-m", "tests.city_swarm", str(spec)], tmp / f"{name}.log")
        info = self.read_json_line(timeout=120)
        self._sock = socket.create_connection(("127.0.0.1", info["control"]), timeout=600)
        self._file = self._sock.makefile("rwb")

    def ask(self, cmd: dict[str, Any]) -> Any:
        self._file.write(json.dumps(cmd).encode() + b"\n")
        self._file.flush()
        answer = json.loads(self._file.readline())
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def stop(self, sig: int = 15, timeout: float = 10.0) -> int:
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            self.ask({"op": "stop"})
        self._sock.close()
        return super().stop(sig, timeout)


@dataclass
class County:
    tmp: Path
    start: Callable[..., GatewayProcess]
    city: GatewayProcess
    towns: list[GatewayProcess]
    swarms: list[SwarmProcess]
    village_town: dict[str, str]  # village id -> town id
    cameras: int
    timings: dict[str, float] = field(default_factory=dict)

    def village_of(self, village: str) -> SwarmProcess:
        index = sorted(self.village_town).index(village)
        return self.swarms[index % len(self.swarms)]

    def camera_path(self, village: str, camera: str) -> str:
        return f"{self.village_town[village]}/{village}/{camera}"

    def restart_city(self) -> None:
        port = self.city.port
        self.city.stop()
        self.city = self.start(city_config(), name="city", port=port)


def city_config() -> dict[str, Any]:
    return {"cascade": {"level": "city", "id": "city", "name": "市", **BEAT}}


def start_county(
    start: Callable[..., GatewayProcess],
    tmp: Path,
    *,
    towns: int,
    villages_per_town: int,
    cameras_per_village: int,
    swarms: int = 1,
) -> County:
    """City, then towns, then every village (in ``swarms`` processes)."""
    t0 = time.monotonic()
    city = start(city_config(), name="city")
    town_procs: list[GatewayProcess] = []
    for t in range(towns):
        tid = f"town-{t:02d}"
        town_procs.append(
            start(
                {
                    "cascade": {
                        "level": "town",
                        "id": tid,
                        "name": f"第{t + 1}镇",
                        **BEAT,
                        "parent": {"url": city.base_url, "token": issue_token_api(city, tid)},
                    }
                },
                name=tid,
            )
        )
    specs: list[dict[str, Any]] = []
    village_town: dict[str, str] = {}
    for t, town in enumerate(town_procs):
        for v in range(villages_per_town):
            vid = f"village-{t:02d}-{v:02d}"
            village_town[vid] = f"town-{t:02d}"
            specs.append(
                {
                    "id": vid,
                    "name": f"{t + 1}镇{v + 1}村",
                    "parent_url": town.base_url,
                    "token": issue_token_api(town, vid),
                    "cameras": cameras_per_village,
                }
            )
    specs.sort(key=lambda s: s["id"])
    t_children = time.monotonic()
    procs = [SwarmProcess(tmp, specs[i::swarms], name=f"swarm-{i}") for i in range(swarms)]
    county = County(
        tmp, start, city, town_procs, procs, village_town, len(specs) * cameras_per_village
    )
    county.timings["processes_started_s"] = t_children - t0
    county.timings["children_started_at"] = t_children
    return county


def city_cameras(county: County) -> dict[str, dict[str, Any]]:
    r = county.city.client.get("/api/v1/tree")
    r.raise_for_status()
    return all_cameras(r.json())


def wait_converged(county: County, timeout: float) -> float:
    """Seconds until the city's tree holds every camera, each online."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = 0
    while time.monotonic() < deadline:
        cams = city_cameras(county)
        online = sum(1 for c in cams.values() if c["status"] == "online")
        last = online
        if len(cams) == county.cameras and online == county.cameras:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(
        f"the city shows {last} of {county.cameras} cameras online after {timeout} s"
    )


def status_change_latency(county: County, village: str, camera: str, status: str) -> float:
    """Seconds from a village camera's status change to the city's tree showing it."""
    path = county.camera_path(village, camera)
    t0 = time.monotonic()
    county.village_of(village).ask(
        {"op": "status", "village": village, "camera": camera, "status": status}
    )
    deadline = t0 + 60
    while time.monotonic() < deadline:
        r = county.city.client.get(f"/api/v1/tree/cameras/{path}")
        if r.status_code == 200 and r.json().get("status") == status:
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{path} did not become {status} at the city within 60 s")


def city_motion_events(county: County) -> list[dict[str, Any]]:
    """The swarm's motion events the city stored, in the order it stored them first."""
    db = county.city.data_dir / "gateway.db"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT body FROM events ORDER BY rowid").fetchall()
    finally:
        conn.close()
    out = []
    for (body,) in rows:
        event = json.loads(body)
        if event["type"] == "motion" and "seq" in event.get("data", {}):
            out.append(event)
    return out


def check_events(events: list[dict[str, Any]], published: dict[str, int]) -> dict[str, int]:
    """Lost, duplicated and out-of-order counts against what each village published."""
    seen: dict[str, list[int]] = {}
    for e in events:
        seen.setdefault(e["data"]["src"], []).append(e["data"]["seq"])
    lost = dup = disorder = 0
    for src, count in published.items():
        seqs = seen.get(src, [])
        lost += count - len(set(seqs))
        dup += len(seqs) - len(set(seqs))
        disorder += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
    return {"lost": lost, "duplicated": dup, "out_of_order": disorder}


def published_counts(county: County) -> dict[str, int]:
    out: dict[str, int] = {}
    for swarm in county.swarms:
        for vid, st in swarm.ask({"op": "stats"}).items():
            out[vid] = st["published"]
    return out


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def api_latency(county: County, path: str, rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        county.city.client.get(path).raise_for_status()
        times.append(time.perf_counter() - t0)
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": p99(times) * 1000}
