"""``gateway demo`` stops every process it started on SIGTERM and SIGHUP, refuses to
start over a running demo, and cleans up after a demo that was killed outright.

Real processes: the demo with its three simulators and four gateways. Nothing waits for
the system to be up; the point is which processes exist, so each step waits only until
the pid file names the processes it needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gateway.demo_guard import PID_FILE
from tests.support import ROOT, free_port_block

EVERY_PROCESS = 7  # three simulators and four gateways

# gateway demo binds --port and the three after it (city, town, two villages).
DEMO_PORTS = 4


def alive(pid: int) -> bool:
    """A live process of ours (a zombie or a reused pid does not count)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"gateway" in argv


def marked(mark: str) -> list[int]:
    """Every live process carrying ``mark`` in its environment (children inherit it)."""
    found = []
    needle = f"DEMO_TEST_MARK={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if alive(pid)]


def wait_for(fn: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(what)


class DemoRun:
    def __init__(self, root: Path, port: int, name: str) -> None:
        self.root, self.port = root, port
        self.err = root.parent / f"{name}.stderr"
        self.mark = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        with self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "demo", "--port", str(port), "--dir", str(root)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "DEMO_TEST_MARK": self.mark},
            )

    def leftovers(self) -> list[int]:
        return [p for p in marked(self.mark) if p != self.proc.pid]

    def children(self, at_least: int, timeout: float = 120) -> list[int]:
        def read() -> list[int] | None:
            assert self.proc.poll() is None, self.stderr()
            try:
                pids = json.loads((self.root / PID_FILE).read_text())["children"]
            except (OSError, ValueError, KeyError):
                return None
            return pids if len(pids) >= at_least else None

        return wait_for(read, timeout, f"fewer than {at_least} children: {self.stderr()}")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")[-3000:]

    def kill_all(self) -> None:
        """Clean-up of last resort for the test itself."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.leftovers():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def refused(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sighup_stops_every_process_and_a_second_demo_is_refused(tmp_path: Path) -> None:
    port = free_port_block(DEMO_PORTS)
    demo = DemoRun(tmp_path / "demo", port, "demo")
    try:
        pids = demo.children(EVERY_PROCESS)
        assert all(alive(p) for p in pids)

        same_dir = refused(["--dir", str(demo.root), "--port", str(free_port_block(DEMO_PORTS))])
        assert same_dir.returncode == 1
        assert f"a demo is already running in {demo.root}" in same_dir.stderr
        assert f"kill {demo.proc.pid}" in same_dir.stderr
        elsewhere = refused(
            ["--dir", str(tmp_path / "other"), "--port", str(free_port_block(DEMO_PORTS))]
        )
        assert elsewhere.returncode == 1
        assert f"a demo is already running (pid {demo.proc.pid})" in elsewhere.stderr
        # The refused demos touched nothing: everything still runs.
        assert demo.proc.poll() is None and all(alive(p) for p in pids)

        demo.proc.send_signal(signal.SIGHUP)
        assert demo.proc.wait(60) == 0, demo.stderr()
        assert "SIGHUP received; stopping every process" in demo.stderr()
        assert not any(alive(p) for p in pids)
        assert demo.leftovers() == []
        assert not (demo.root / PID_FILE).exists()
    finally:
        demo.kill_all()


def test_a_demo_refuses_a_port_another_program_holds(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = refused(["--dir", str(tmp_path / "demo"), "--port", str(port)])
    assert out.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in out.stderr
    assert not (tmp_path / "demo" / PID_FILE).exists()


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    demo = DemoRun(tmp_path / "demo", free_port_block(DEMO_PORTS), "demo")
    try:
        demo.children(1)
        demo.proc.send_signal(signal.SIGTERM)
        assert demo.proc.wait(60) == 0, demo.stderr()
        assert "SIGTERM received; stopping every process" in demo.stderr()
        # Whatever it had started when the signal came (its environment says) is gone.
        assert demo.leftovers() == []
    finally:
        demo.kill_all()


def test_a_demo_after_a_kill_9_stops_the_orphans_it_left(tmp_path: Path) -> None:
    port = free_port_block(DEMO_PORTS)
    first = DemoRun(tmp_path / "demo", port, "first")
    second: DemoRun | None = None
    try:
        orphans = first.children(2)
        first.proc.kill()  # SIGKILL: nothing can clean up
        first.proc.wait(10)
        assert all(alive(p) for p in orphans)  # the problem the guard exists for

        second = DemoRun(tmp_path / "demo", port, "second")
        wait_for(
            lambda: "stopped processes a killed demo left behind" in second.stderr(),
            60,
            "no clean-up",
        )
        assert not any(alive(p) for p in orphans)
        second.children(1)
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(60) == 0, second.stderr()
        assert second.leftovers() == []
    finally:
        first.kill_all()
        if second is not None:
            second.kill_all()
