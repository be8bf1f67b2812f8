"""Keeps ``gateway demo`` from leaving processes behind or starting over a running demo.

The demo's children run in sessions of their own (so a Ctrl-C in the terminal reaches
the demo, which stops them in order), which also means nothing stops them when the
demo itself is killed. So: SIGTERM and SIGHUP stop the demo like Ctrl-C does; a pid
file in the demo's directory names the demo and its children, so a second demo on the
same directory refuses to start, and one started after a ``kill -9`` stops the orphans
the dead demo left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

PID_FILE = "demo.pid"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class DemoRunning(RuntimeError):
    """Another demo runs on this directory or holds one of the ports."""


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived: stop everything, like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# A stop signal that arrived while a child was being spawned, raised once it is recorded.
_held: list[int] = []
_holding = False


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    if _holding:
        _held.append(signum)
        return
    raise Stopped(signum)


def install_stop_handlers() -> None:
    """SIGTERM and SIGHUP raise :class:`Stopped` in the main thread (Ctrl-C stays as is)."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGHUP, _raise_stopped)


def ignore_stop_signals() -> None:
    """While stopping: a second signal must not cut the clean-up short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold stop signals back while a child is spawned and recorded (none escapes).

    Not ``pthread_sigmask``: a child inherits a blocked mask through exec, and would
    then never see our SIGTERM.
    """
    global _holding
    _holding = True
    try:
        yield
    finally:
        _holding = False
        if _held:
            raise Stopped(_held.pop())


def _is_gateway(pid: int, verb: str | None = None) -> bool:
    """Whether ``pid`` is alive and one of ours (pids get reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in argv]
    # ``python -m gateway demo`` or the installed ``…/bin/gateway demo``.
    ours = any(Path(w).name == "gateway" for w in words)
    return ours and (verb is None or verb in words)


def claim(root: Path, ports: list[int]) -> list[int]:
    """Refuse if a demo runs on ``root`` or a port is taken; stop a dead demo's orphans.

    Returns the pids of the orphans stopped (they were ours: a ``gateway`` command line).
    """
    pid_file = root / PID_FILE
    orphans: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads(pid_file.read_text())
        owner = int(recorded["pid"])
        if owner != os.getpid() and _is_gateway(owner, "demo"):
            raise DemoRunning(
                f"a demo is already running in {root} (pid {owner}); stop it with"
                f" 'kill {owner}' or start this one with another --dir and --port"
            )
        for pid in recorded.get("children", []):
            if _is_gateway(int(pid)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGTERM)
                orphans.append(int(pid))
    deadline = time.monotonic() + 15
    while any(_is_gateway(pid) for pid in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    for other in _other_demos():
        raise DemoRunning(
            f"a demo is already running (pid {other}); stop it with 'kill {other}' first"
            " (the simulated cameras use fixed loopback addresses: one demo per machine)"
        )
    for port in ports:
        if _port_taken(port):
            raise DemoRunning(
                f"port {port} on 127.0.0.1 is in use (another demo or service?);"
                " stop it or choose another --port"
            )
    return orphans


def _other_demos() -> list[int]:
    mine = {os.getpid(), os.getppid()}
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid not in mine and _is_gateway(pid, "demo")]


def record(root: Path, children: list[int]) -> None:
    """Write the pid file: this demo and its children (rewritten on every spawn)."""
    tmp = root / (PID_FILE + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "children": children}))
    tmp.replace(root / PID_FILE)


def release(root: Path) -> None:
    with contextlib.suppress(OSError):
        if json.loads((root / PID_FILE).read_text())["pid"] == os.getpid():
            (root / PID_FILE).unlink()


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as err:
            return err.errno == errno.EADDRINUSE
    return False
