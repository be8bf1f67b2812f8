"""Runs the built image as an operator would and checks it from outside.

Called by ``scripts/container-check`` once the image is built: starts a simulated
camera on this host, the container with host networking, a config and a data volume;
waits for Docker's own health check to say ``healthy``; plays the camera over WHEP
with an aiortc client from outside the container; stops the container with SIGTERM
and checks that the recording segment open at that moment was closed cleanly (status
``closed`` in the index, the file readable by ffprobe to its indexed length).
Exits non-zero with the reason on the first failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.relay_helpers import WhepClient  # noqa: E402
from tests.support import ADMIN_PASSWORD, SimProcess, free_port, login, small_sim_args  # noqa: E402

DOCKER = os.environ.get("DOCKER", "docker")


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def wait(what: str, fn: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


async def play(base_url: str, token: str, camera: str, frames: int) -> int:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        client = WhepClient(http, f"/api/v1/streams/{camera}/whep")
        r = await client.start()
        if r.status_code != 201:
            raise SystemExit(f"WHEP offer refused: {r.status_code} {r.text[:200]}")
        try:
            await client.wait_frames(frames, timeout=60)
        finally:
            await client.stop()
        return client.received.frames


def segments(db_path: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT status, path, duration FROM rec_segments ORDER BY start"
        ).fetchall()
    return [(str(s), str(p), float(d)) for s, p, d in rows]


def ffprobe_seconds(path: Path) -> float:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0:
        raise SystemExit(f"ffprobe cannot read {path.name}: {out.stderr.strip()}")
    return float(json.loads(out.stdout)["format"].get("duration") or 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--record-s", type=float, default=8.0, help="recording before the stop")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="container-check-"))
    (work / "config").mkdir()
    data = work / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)  # the image's 'gateway' user
    sim = SimProcess(work, *small_sim_args("127.0.77.1", fps=10, gop=10))
    port = free_port()
    camera = sim.cameras[0]
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "cameras": [
            {
                "id": "cam-01",
                "rtsp_url": camera["rtsp_main"],
                "recording": {"mode": "continuous", "segment_s": 60},
            }
        ],
        "motion": {"enabled": False},
        "retention": {"max_usage_percent": 99, "min_free_mb": 0},
    }
    (work / "config" / "gateway.yaml").write_text(json.dumps(config), encoding="utf-8")
    name = f"gateway-check-{os.getpid()}"
    container = ""
    try:
        t0 = time.monotonic()
        container = docker(
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "host",
            "--health-interval",
            "2s",
            "--health-start-period",
            "60s",
            "-e",
            f"GATEWAY__SERVER__PORT={port}",
            "-e",
            "GATEWAY__SERVER__HOST=127.0.0.1",
            "-e",
            f"GATEWAY_ADMIN_PASSWORD={ADMIN_PASSWORD}",
            "-v",
            f"{work / 'config'}:/config:ro",
            "-v",
            f"{data}:/data",
            args.image,
        )
        wait(
            "Docker's health check to say healthy",
            lambda: (
                docker("inspect", "-f", "{{.State.Health.Status}}", container) == "healthy"
                or docker("inspect", "-f", "{{.State.Running}}", container) == "false"
            ),
            120,
        )
        if docker("inspect", "-f", "{{.State.Running}}", container) == "false":
            raise SystemExit(f"container exited: {docker('logs', '--tail', '40', container)}")
        print(f"healthy after {time.monotonic() - t0:.1f} s")
        base_url = f"http://127.0.0.1:{port}"
        token = login(base_url) or ""
        frames = asyncio.run(play(base_url, token, "cam-01", 30))
        if frames < 30:
            raise SystemExit(f"WHEP from outside the container: only {frames} frames")
        print(f"WHEP from outside the container: {frames} frames decoded")
        wait(
            "a recording segment to open",
            lambda: (data / "gateway.db").exists() and segments(data / "gateway.db"),
            60,
        )
        time.sleep(args.record_s)
        t_stop = time.monotonic()
        docker("stop", "--time", "20", container)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", container)
        print(f"stopped by SIGTERM in {time.monotonic() - t_stop:.1f} s, exit code {code}")
        if code != "0":
            raise SystemExit(
                f"exit code {code} after SIGTERM: {docker('logs', '--tail', '40', container)}"
            )
        rows = segments(data / "gateway.db")
        for status, path, duration in rows:
            if status != "closed":
                raise SystemExit(f"segment {path} left {status!r} by the stop")
            file = data / "recordings" / path  # the index keeps paths relative to it
            seconds = ffprobe_seconds(file)
            if abs(seconds - duration) > 1.0:
                raise SystemExit(
                    f"{file.name}: ffprobe reads {seconds:.1f} s, index says {duration:.1f} s"
                )
            print(
                f"segment {file.name}: closed, {duration:.1f} s indexed, {seconds:.1f} s readable"
            )
        size = int(docker("image", "inspect", "-f", "{{.Size}}", args.image))
        print(f"image size: {size / 1e6:.0f} MB")
        print("container check passed")
        return 0
    finally:
        if container:
            docker("rm", "-f", container, check=False)
        sim.stop()


if __name__ == "__main__":
    raise SystemExit(main())
