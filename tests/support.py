"""Helpers for tests that run real gateway and simulator processes on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "test-admin-pw"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _bindable(port: int, host: str) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_block(n: int, host: str = "127.0.0.1") -> int:
    """The first of ``n`` consecutive free ports (``gateway demo --port`` takes four).

    Drawn below the kernel's ephemeral range: a block drawn inside it can lose a port to
    any outgoing connection before the program under test binds it (seen: a demo refused
    because its third port had become some client's local port).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(500):
        base = random.randint(10000, max(10001, low - n - 1))
        if all(_bindable(base + i, host) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports below {low}")


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError as err:
            last = err
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


class Proc:
    """A child process whose stderr goes to a log file kept for the test report."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,
        )

    def read_json_line(self, timeout: float = 60.0) -> dict[str, Any]:
        """The first stdout line that parses as a JSON object."""
        assert self.popen.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.popen.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"process exited {self.popen.returncode}: {self.tail()}")
            if sel.select(0.2):
                line = self.popen.stdout.readline()
                if line.strip().startswith(b"{"):
                    return json.loads(line)
        raise TimeoutError(f"no JSON line within {timeout}s: {self.tail()}")

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


class SimProcess(Proc):
    """``gateway sim`` in a child process; ``info`` is its ready line."""

    def __init__(self, tmp: Path, *args: str, name: str = "sim") -> None:
        super().__init__([sys.executable, "-m", "gateway", "sim", *args], tmp / f"{name}.log")
        self.info = self.read_json_line()
        self.cameras: list[dict[str, Any]] = self.info["cameras"]
        self.control: str = self.info["control"]

    def fault(self, camera_id: str, mode: str) -> None:
        httpx.post(f"{self.control}/cameras/{camera_id}/fault", json={"mode": mode}, timeout=5)

    def motion(self, camera_id: str, on: bool) -> None:
        httpx.post(f"{self.control}/cameras/{camera_id}/motion", json={"on": on}, timeout=5)

    def picture(self, camera_id: str, mode: str) -> None:
        r = httpx.post(
            f"{self.control}/cameras/{camera_id}/picture", json={"mode": mode}, timeout=5
        )
        r.raise_for_status()


class GatewayProcess(Proc):
    """``gateway run`` in a child process with its own data dir and port."""

    def __init__(
        self,
        tmp: Path,
        config: dict[str, Any] | None = None,
        name: str = "gw",
        login_as_admin: bool = True,
        tls: bool = False,
        port: int | None = None,
        **env: str,
    ) -> None:
        self.port = port or free_port()  # a restart passes the port it had
        self.data_dir = tmp / f"{name}-data"
        cfg = dict(config or {})
        cfg.setdefault("server", {})
        cfg["server"] = {"host": "127.0.0.1", "port": self.port, **cfg["server"]}
        cfg_path = tmp / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        verify = not tls  # a self-signed certificate: tests pin it where it matters
        super().__init__(
            [sys.executable, "-m", "gateway", "run", "--config", str(cfg_path)],
            tmp / f"{name}.log",
            env={
                "GATEWAY_DATA_DIR": str(self.data_dir),
                "GATEWAY_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **env,
            },
        )
        deadline = time.monotonic() + 60
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"gateway exited {self.popen.returncode}: {self.tail()}")
            try:
                httpx.get(self.base_url + "/api/v1/health", timeout=1, verify=verify)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gateway did not start: {self.tail()}") from None
                time.sleep(0.1)
        self.token = login(self.base_url, verify=verify) if login_as_admin else None
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}"} if self.token else {},
            timeout=30,
            verify=verify,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        return super().stop(sig, timeout)


def login(
    base_url: str, username: str = "admin", password: str = ADMIN_PASSWORD, verify: bool = True
) -> str | None:
    """A bearer token for the admin, or None when the gateway has no auth yet."""
    r = httpx.post(
        base_url + "/api/v1/auth/token",
        json={"username": username, "password": password},
        timeout=10,
        verify=verify,
    )
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()["access_token"]


def small_sim_args(
    base: str, *, cameras: int = 1, fps: int = 10, gop: int | None = None, wsd: bool = False
) -> list[str]:
    """``gateway sim`` arguments for cheap 320x180 cameras on free ports of ``base``."""
    args = ["--cameras", str(cameras), "--base", base]
    args += ["--http-port", str(free_port(base)), "--rtsp-port", str(free_port(base))]
    args += ["--size", "320x180", "--sub-size", "320x180", "--fps", str(fps)]
    if gop is not None:
        args += ["--gop", str(gop)]
    return args if wsd else [*args, "--no-wsd"]
