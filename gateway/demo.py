"""``gateway demo``: a whole three-level system on loopback, ready in well under a minute.

City (市指挥中心) ← town (城关镇) ← two villages (东村, 西村), each a separate ``gateway
run`` process, with simulated cameras under the town and both villages. Villages find
their cameras by a unicast WS-Discovery sweep of their loopback range (nothing
multicasts); children dial out to their parents with tokens issued by ``gateway
children add``; a linkage rule (预案) at the town brings up a group of feeds when a
village camera sees motion. Ctrl-C, SIGTERM or SIGHUP stops everything; a second demo
on the same directory or ports refuses to start (see :mod:`gateway.demo_guard`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway import demo_guard

DEMO_PASSWORD = "demo-admin-123"


@dataclass
class Node:
    """One gateway of the demo tree."""

    id: str
    name: str
    level: str
    port: int
    parent: Node | None = None
    sim_base: str | None = None
    sim_cameras: int = 0
    camera_names: list[str] = field(default_factory=list)  # what the duty operator calls them
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _tree(base_port: int) -> list[Node]:
    city = Node("city", "市指挥中心", "city", base_port)
    town = Node("town-a", "城关镇", "town", base_port + 1, city, "127.0.20.1", 2)
    town.camera_names = ["镇政府大门", "十字路口"]
    village1 = Node("village-1", "东村", "village", base_port + 2, town, "127.0.21.1", 3)
    # 村口 twice, as in real villages: the wall tells them apart by place (东村 · 村口).
    village1.camera_names = ["村口", "学校门口", "村委会"]
    village2 = Node("village-2", "西村", "village", base_port + 3, town, "127.0.22.1", 2)
    village2.camera_names = ["村口", "水库大坝"]
    town.extra["linkage"] = [
        {
            "name": "东村报警联动 / east village alarm",
            "match": {"camera": "village-1/*", "type": "motion"},
            "cameras": ["village-1/cam-01", "village-2/cam-01", "cam-01"],
            "wall": True,
            "record_s": 60,
        }
    ]
    return [city, town, village1, village2]


class Demo:
    def __init__(self, root: Path, base_port: int, fresh: bool) -> None:
        self.root = root.resolve()
        self.nodes = _tree(base_port)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        if fresh and self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "GATEWAY_ADMIN_PASSWORD": DEMO_PASSWORD}

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        # A stop signal waits until the child is on the list (and in the pid file).
        with demo_guard.signals_held():
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", *args],
                stdout=subprocess.PIPE,
                stderr=log,
                env={**self.env, **(env or {})},
                start_new_session=True,
            )
            self.procs.append((name, proc))
            demo_guard.record(self.root, [p.pid for _, p in self.procs])
        return proc

    def start_sims(self) -> dict[str, list[dict[str, Any]]]:
        """One simulator process per site; returns each site's camera list."""
        cameras: dict[str, list[dict[str, Any]]] = {}
        for node in self.nodes:
            if not node.sim_base:
                continue
            proc = self._spawn(
                f"sim-{node.id}",
                [
                    "sim",
                    "--cameras",
                    str(node.sim_cameras),
                    "--base",
                    node.sim_base,
                    "--size",
                    "640x360",
                    "--sub-size",
                    "320x180",
                    "--fps",
                    "15",
                    "--gop",
                    "15",
                    "--username",
                    "admin",
                    "--password",
                    "admin123",
                    "--motion-every",
                    "45",
                    *(["--names", ",".join(node.camera_names)] if node.camera_names else []),
                ],
            )
            cameras[node.id] = _ready_line(proc, f"simulator for {node.id}", self.root)["cameras"]
        return cameras

    def _data(self, node: Node) -> Path:
        return self.root / node.id

    def issue_token(self, parent: Node, child: Node) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "children", "add", child.id, "--json"],
            env={**self.env, "GATEWAY_DATA_DIR": str(self._data(parent))},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"could not issue a token for {child.id}: {out.stderr.strip()}")
        return json.loads(out.stdout)["token"]

    def config(self, node: Node, cams: list[dict[str, Any]]) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "data_dir": str(self._data(node)),
            "server": {"host": "127.0.0.1", "port": node.port},
            "cascade": {"level": node.level, "id": node.id, "name": node.name},
            "streams": {"linger_s": 10},
            # The simulator burns a clock barcode into the top 8 % of every frame:
            # mask it, as an operator masks a camera's on-screen clock.
            "motion": {"masks": [[[0, 0], [1, 0], [1, 0.08], [0, 0.08]]]},
            "recording": {"mode": "events", "stream": "main", "segment_s": 30},
            "retention": {"continuous_days": 1, "event_days": 3, "min_free_mb": 256},
        }
        if node.parent is not None:
            cfg["cascade"]["parent"] = {
                "url": node.parent.url,
                "token": self.issue_token(node.parent, node),
            }
        if cams:
            first, last = cams[0]["address"], cams[-1]["address"]
            prefix = first.rsplit(".", 1)[0]
            cfg["discovery"] = {
                "ranges": [f"{prefix}.0/24" if first != last else first],
                "interval_s": 60,
                "auto_add": True,
                "username": "admin",
                "password": "admin123",
            }
        if node.extra.get("linkage"):
            cfg["linkage"] = node.extra["linkage"]
        return cfg

    def start_gateways(self, cameras: dict[str, list[dict[str, Any]]]) -> None:
        # Parents first, so their token stores exist when children are added.
        for node in self.nodes:
            self._data(node).mkdir(parents=True, exist_ok=True)
        configs = {n.id: self.config(n, cameras.get(n.id, [])) for n in self.nodes}
        for node in self.nodes:
            path = self.root / f"{node.id}.yaml"
            path.write_text(yaml.safe_dump(configs[node.id], allow_unicode=True), encoding="utf-8")
            self._spawn(node.id, ["run", "--config", str(path)])
        for node in self.nodes:
            _wait_http(node.url + "/api/v1/health", node.id, self.root)

    def stop(self) -> None:
        demo_guard.ignore_stop_signals()
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        demo_guard.release(self.root)

    def watch(self) -> int:
        """Wait for Ctrl-C; report a child that dies."""
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    print(f"demo: {name} exited ({proc.returncode}); see {self.root}/{name}.log")
                    return 1
            time.sleep(1)


def _ready_line(proc: subprocess.Popen[bytes], what: str, root: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited; see the logs in {root}")
            continue
        if line.strip().startswith(b"{"):
            return json.loads(line)
    raise RuntimeError(f"{what} did not become ready in 60 s; see the logs in {root}")


def _wait_http(url: str, what: str, root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start in {timeout:.0f} s; see {root}/{what}.log")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=8080, help="city port (town +1, villages +2, +3)"
    )
    parser.add_argument("--dir", default="demo-data", help="where the demo keeps data and logs")
    parser.add_argument("--keep", action="store_true", help="keep data from a previous run")
    parser.add_argument(
        "--check", action="store_true", help="start, verify the city sees cameras, then stop"
    )
    args = parser.parse_args(argv)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    try:
        orphans = demo_guard.claim(root, [n.port for n in _tree(args.port)])
    except demo_guard.DemoRunning as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    if orphans:
        print(f"demo: stopped processes a killed demo left behind: {orphans}", file=sys.stderr)
    demo_guard.install_stop_handlers()
    demo = Demo(root, args.port, fresh=not args.keep)
    demo_guard.record(demo.root, [])
    t0 = time.monotonic()
    try:
        cameras = demo.start_sims()
        demo.start_gateways(cameras)
        city = demo.nodes[0]
        print(
            f"\n  三级联网演示已启动 / three-level demo is up ({time.monotonic() - t0:.0f} s)\n"
            f"  指挥中心 / command centre:  {city.url}/\n"
            f"  登录 / login:               admin / {DEMO_PASSWORD}\n"
            f"  town {demo.nodes[1].url}/  villages {demo.nodes[2].url}/ {demo.nodes[3].url}/\n"
            f"  logs: {demo.root}/   Ctrl-C (or kill) to stop\n",
            flush=True,
        )
        if args.check:
            return _check(city, sum(len(c) for c in cameras.values()))
        return demo.watch()
    except KeyboardInterrupt:
        return 0
    except demo_guard.Stopped as stop:
        print(f"demo: {stop} received; stopping every process", file=sys.stderr, flush=True)
        return 0
    except RuntimeError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 1
    finally:
        demo.stop()


def _check(city: Node, expected: int, timeout: float = 60) -> int:
    """Wait until the city's tree holds every simulated camera, online."""
    token = httpx.post(
        city.url + "/api/v1/auth/token", json={"username": "admin", "password": DEMO_PASSWORD}
    ).json()["access_token"]
    deadline = time.monotonic() + timeout
    online = 0
    while time.monotonic() < deadline:
        tree = httpx.get(
            city.url + "/api/v1/tree", headers={"Authorization": f"Bearer {token}"}
        ).json()
        online = sum(1 for c in _cameras(tree) if c.get("status") == "online")
        if online >= expected:
            print(f"demo check: city sees {online}/{expected} cameras online")
            return 0
        time.sleep(1)
    print(f"demo check: city sees only {online}/{expected} cameras online", file=sys.stderr)
    return 1


def _cameras(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = list(node.get("cameras", []))
    for child in node.get("children", []):
        out += _cameras(child)
    return out
