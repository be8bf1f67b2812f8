"""Helpers for the cascade tests: a city ← town ← village system of real processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import ROOT, GatewayProcess


@dataclass
class Levels:
    city: GatewayProcess
    town: GatewayProcess
    village: GatewayProcess


def issue_token_cli(parent: GatewayProcess, name: str) -> str:
    """``gateway children add NAME --json`` against the parent's data dir (parent running)."""
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "children", "add", name, "--json"],
        env={"GATEWAY_DATA_DIR": str(parent.data_dir), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


def issue_token_api(parent: GatewayProcess, name: str) -> str:
    r = parent.client.post("/api/v1/children", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def start_levels(
    start: Callable[..., GatewayProcess],
    *,
    town_extra: dict[str, Any] | None = None,
    village_extra: dict[str, Any] | None = None,
    city_extra: dict[str, Any] | None = None,
    heartbeat_s: float = 1.0,
    offline_after_s: float = 3.0,
) -> Levels:
    """City, town (child of the city) and village (child of the town), in that order."""
    beat = {"heartbeat_s": heartbeat_s, "offline_after_s": offline_after_s}
    city = start(
        {**(city_extra or {}), "cascade": {"level": "city", "id": "city", "name": "市", **beat}},
        name="city",
    )
    town_cfg = {
        **(town_extra or {}),
        "cascade": {
            "level": "town",
            "id": "town-a",
            "name": "城关镇",
            **beat,
            "parent": {"url": city.base_url, "token": issue_token_cli(city, "town-a")},
        },
    }
    town = start(town_cfg, name="town")
    village_cfg = {
        **(village_extra or {}),
        "cascade": {
            "level": "village",
            "id": "village-1",
            "name": "东村",
            **beat,
            "parent": {"url": town.base_url, "token": issue_token_api(town, "village-1")},
        },
    }
    village = start(village_cfg, name="village")
    return Levels(city, town, village)


def wait_for(fn: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def child_stats(gw: GatewayProcess, name: str) -> dict[str, Any]:
    stats = gw.client.get("/api/v1/cascade").json()
    return next((c for c in stats["children"] if c["name"] == name), {})


def find_node(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    if tree["path"] == path:
        return tree
    for child in tree["children"]:
        found = find_node(child, path)
        if found is not None:
            return found
    return None


def all_cameras(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {c["path"]: c for c in tree["cameras"]}
    for child in tree["children"]:
        out.update(all_cameras(child))
    return out


def stored_events(gw: GatewayProcess, type_: str | None = None) -> list[dict[str, Any]]:
    """Events in the gateway's own database, in the order it stored them first."""
    conn = sqlite3.connect(f"file:{gw.data_dir / 'gateway.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT body FROM events ORDER BY rowid").fetchall()
    finally:
        conn.close()
    events = [json.loads(r[0]) for r in rows]
    return [e for e in events if type_ is None or e["type"] == type_]


def metric(gw: GatewayProcess, name: str) -> float:
    text = gw.client.get("/metrics").text
    for line in text.splitlines():
        key = line.split(" ")[0]
        if key == name or key.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def data_path(gw: GatewayProcess) -> Path:
    return gw.data_dir
