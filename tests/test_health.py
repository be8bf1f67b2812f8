"""``/api/v1/health`` says what is true, and a gateway that cannot start says so and exits.

Real processes: a simulated camera, a gateway, another SQLite connection that holds the
database's write lock (a backup tool, a stuck writer), a gateway process whose last part
fails to start.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.app import Gateway, StartupFailed
from gateway.config import parse_settings
from tests.recorder_media import random_base
from tests.support import free_port, small_sim_args


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(what)


def test_health_reports_parts_database_disk_cameras_and_uplink(
    sim_factory, gateway_factory
) -> None:
    sim = sim_factory(*small_sim_args(random_base()))
    config = {
        "cameras": [
            {"id": "cam-01", "rtsp_url": sim.cameras[0]["rtsp_main"]},
            {"id": "cam-02", "rtsp_url": "rtsp://127.0.0.1:9/nothing-listens-here"},
        ],
        "motion": {"enabled": False},
        "streams": {"backoff_initial_s": 0.3, "backoff_max_s": 1.0},
        # A parent nobody answers for: the uplink keeps trying, the gateway is still fine.
        "cascade": {
            "id": "village-9",
            "level": "village",
            "parent": {"url": f"http://127.0.0.1:{free_port()}", "token": "t0ken-not-shown"},
        },
    }
    gw = gateway_factory(config)

    def cameras_settled() -> Any:
        r = httpx.get(gw.base_url + "/api/v1/health", timeout=10)
        return r if r.json()["cameras"] == {"online": 1, "total": 2} else None

    r = wait_for(cameras_settled, 60, "cam-01 never counted online")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["id"] == "village-9" and body["level"] == "village"
    assert set(body["parts"]) >= {"auth", "registry", "streams", "recorder", "cascade"}
    assert all(p["state"] == "running" for p in body["parts"].values()), body["parts"]
    assert body["database"]["writable"] is True
    assert body["disk"]["state"] == "ok" and body["disk"]["paused_cameras"] == []
    assert body["disk"]["free_bytes"] > 0
    assert body["uplink"] == {"state": "connecting"}
    assert "t0ken-not-shown" not in r.text and "127.0.0.1" not in r.text


def test_health_is_503_while_the_database_cannot_be_written(gateway_factory) -> None:
    gw = gateway_factory({"motion": {"enabled": False}})
    url = gw.base_url + "/api/v1/health"
    assert httpx.get(url, timeout=10).status_code == 200
    holder = sqlite3.connect(str(gw.data_dir / "gateway.db"), timeout=5, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        r = wait_for(
            lambda: (x := httpx.get(url, timeout=30)).status_code == 503 and x, 30, "still 200"
        )
        body = r.json()
        assert body["status"] == "unavailable"
        assert body["database"]["writable"] is False
        assert "locked" in body["database"]["error"]
        assert "database is not writable" in body["problems"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_for(lambda: httpx.get(url, timeout=30).status_code == 200, 30, "no 200 after release")


class _Boom:
    """A part that cannot start (the real parts before it have started)."""

    async def start(self) -> None:
        raise RuntimeError("cannot bind the GB/T 28181 port")

    async def stop(self) -> None:
        raise AssertionError("a part that failed to start is not stopped")


def test_a_part_that_fails_to_start_stops_those_already_started(tmp_path: Path) -> None:
    settings = parse_settings({"data_dir": str(tmp_path / "data"), "motion": {"enabled": False}})
    gw = Gateway(settings)
    real = list(gw.parts)
    gw.parts["boom"] = _Boom()
    gw.states["boom"] = "built"

    async def run() -> None:
        with pytest.raises(StartupFailed) as failed:
            await gw.start()
        assert "part 'boom' failed to start" in str(failed.value)
        assert "cannot bind the GB/T 28181 port" in str(failed.value)
        # Every real part was started and is stopped again: no thread, no task left over.
        assert {name: gw.states[name] for name in real} == dict.fromkeys(real, "stopped")
        assert gw.states["boom"] == "failed"
        retention = gw.parts["recorder"]._retention_thread
        assert retention is not None
        await asyncio.to_thread(retention.join, 10)
        assert not retention.is_alive()
        assert gw.parts["relay"].peers._watch_task.done()
        gw.db.close()

    asyncio.run(run())


def test_gateway_run_exits_non_zero_with_the_reason_when_a_part_fails(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "server": {"host": "127.0.0.1", "port": port},
                "motion": {"enabled": False},
            }
        )
    )
    # The real CLI, with one more part at the end of the list that cannot start.
    script = textwrap.dedent(
        f"""
        import sys
        import gateway.app as app
        from tests.test_health import _Boom
        real = app.Gateway._build
        def _build(self):
            real(self)
            self.add("boom", _Boom())
        app.Gateway._build = _build
        from gateway.cli import main
        sys.exit(main(["run", "--config", {str(cfg)!r}]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GATEWAY_ADMIN_PASSWORD": "health-test-pw-1"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode != 0, done.stderr[-3000:]
    assert (
        "gateway: could not start: part 'boom' failed to start: RuntimeError:"
        " cannot bind the GB/T 28181 port" in done.stderr
    ), done.stderr[-3000:]
    assert "stopping the parts already started" in done.stderr
