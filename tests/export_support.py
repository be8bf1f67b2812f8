"""A town with two villages, each recording one simulated camera, for the export tests."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cascade_support import all_cameras, issue_token_api, wait_for
from tests.support import ROOT, GatewayProcess, SimProcess, small_sim_args

REC = {"mode": "continuous", "segment_s": 2, "pre_s": 0, "post_s": 0}
QUIET = {"motion": {"enabled": False}, "diagnosis": {"enabled": False}}
# The town keeps continuous footage ~9 s only, so the retention test sees eviction soon.
TOWN_RETENTION = {"continuous_days": 0.0001, "check_interval_s": 1}


@dataclass
class System:
    sim: SimProcess
    town: GatewayProcess
    villages: dict[str, GatewayProcess]


def _camera(cam: dict[str, Any]) -> dict[str, Any]:
    url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"
    return {"id": "cam-01", "name": "村口", "rtsp_url": url, "recording": REC}


def start_system(tmp: Path, base: str) -> Iterator[System]:
    """Sim (3 cameras), town-a (own camera), village-1 and village-2; stops them all after."""
    started: list[Any] = []
    try:
        sim = SimProcess(tmp, *small_sim_args(base, cameras=3, fps=10, gop=10), name="sim")
        started.append(sim)
        town = GatewayProcess(
            tmp,
            {
                **QUIET,
                "cameras": [{**_camera(sim.cameras[0]), "name": "镇政府大门"}],
                "retention": TOWN_RETENTION,
                "cascade": {
                    "level": "town",
                    "id": "town-a",
                    "name": "城关镇",
                    "heartbeat_s": 1,
                    "offline_after_s": 3,
                },
            },
            name="town",
        )
        started.append(town)
        tokens = {vid: issue_token_api(town, vid) for vid in ("village-1", "village-2")}

        def village(n: int, vid: str, vname: str) -> GatewayProcess:
            cfg = {
                **QUIET,
                "cameras": [_camera(sim.cameras[n])],
                "cascade": {
                    "level": "village",
                    "id": vid,
                    "name": vname,
                    "heartbeat_s": 1,
                    "offline_after_s": 3,
                    "parent": {"url": town.base_url, "token": tokens[vid]},
                },
            }
            return GatewayProcess(tmp, cfg, name=vid)

        # Both villages start at once (each start waits for its HTTP port and a login).
        with ThreadPoolExecutor(2) as pool:
            futures = {
                vid: pool.submit(village, n, vid, vname)
                for n, (vid, vname) in enumerate([("village-1", "东村"), ("village-2", "西村")], 1)
            }
            villages = {}
            for vid, future in futures.items():
                try:
                    villages[vid] = future.result()
                except Exception:
                    for other in futures.values():
                        if other.done() and other.exception() is None:
                            other.result().stop()
                    raise
        started.extend(villages.values())
        system = System(sim, town, villages)
        for path in ("cam-01", "village-1/cam-01", "village-2/cam-01"):
            wait_for(lambda p=path: closed_segments(town, p), 60, f"recordings of {path}")
        yield system
    finally:
        for proc in reversed(started):
            proc.stop()


def closed_segments(gw: GatewayProcess, path: str) -> list[dict[str, Any]]:
    r = gw.client.get(f"/api/v1/tree/recordings/{path}")
    if r.status_code != 200:
        return []
    return [s for s in r.json()["recordings"] if not s["recording"]]


def tree_has(gw: GatewayProcess, path: str, status: str = "online") -> bool:
    cams = all_cameras(gw.client.get("/api/v1/tree").json())
    return path in cams and cams[path]["status"] == status


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def run_export(gw: GatewayProcess, body: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    r = gw.client.post("/api/v1/exports", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    def finished() -> dict[str, Any] | None:
        job = gw.client.get(f"/api/v1/exports/{job_id}").json()
        return job if job["state"] not in ("queued", "running") else None

    return wait_for(finished, timeout, f"export {job_id} to finish", every=0.25)


def verify_cli(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "export", "verify", str(path), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def flip_byte_in_member(path: Path, member: str, offset_in_member: int) -> None:
    """Change one byte of a stored ZIP member in place (what a careless or malicious edit does)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    # Local header: 30 bytes + name + extra, then the stored data.
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + offset_in_member] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_member(path: Path, member: str, change: Callable[[bytes], bytes]) -> None:
    """Rewrite the ZIP with one member changed and every CRC recomputed (a careful forger)."""
    with zipfile.ZipFile(path) as zf:
        members = [(info, zf.read(info.filename)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for info, data in members:
            zf.writestr(info, change(data) if info.filename == member else data)
