"""Helpers for the GB/T 28181 tests: SIPp as the upper platform, a small real media
backend (a UDP socket that sends to the platform), settings and a polling wait."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config import Gb28181Settings, GbUpstream
from gateway.gb28181.media_api import MediaError, MediaRequest, MediaSession

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
HOST = "127.0.28.1"  # our own loopback address: nothing else binds here
SERVER_ID = "34020000002000000001"
DEVICE_ID = "34020000002000000002"
DOMAIN = "3402000000"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Sipp:
    """One SIPp process playing a scenario of tests/sipp; stopped by its own pid."""

    def __init__(self, scenario: str, workdir: Path, *args: str, port: int = 0) -> None:
        self.port = port or free_port()
        self.log = workdir / f"sipp-{scenario}-{self.port}-{time.monotonic_ns()}.out"
        cmd = [
            "sipp",
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            HOST,
            "-p",
            str(self.port),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.log.with_suffix(".err")),
            *args,
        ]
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def errors(self) -> str:
        path = self.log.with_suffix(".err")
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


def upstream(port: int, **over: Any) -> GbUpstream:
    raw: dict[str, Any] = {
        "id": "county",
        "server_id": SERVER_ID,
        "domain": DOMAIN,
        "host": HOST,
        "port": port,
        "device_id": DEVICE_ID,
        "password": "s3cret-pw",
        "local_host": HOST,
        "expires_s": 3600,
        "keepalive_s": 1,
        "keepalive_misses": 2,
        "civil_code": "340200",
    }
    raw.update(over)
    return GbUpstream.model_validate(raw)


def settings(*ups: GbUpstream, t1: float = 0.05) -> Gb28181Settings:
    return Gb28181Settings(upstream=list(ups), sip_t1_s=t1)


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class UdpMediaBackend:
    """A real backend for the tests: opens a UDP socket and sends one RTP packet with the
    requested SSRC to the platform's port, so the test can see media arrive."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.on_ended: Callable[[str, str], None] | None = None  # set by the part
        self.open_calls: list[MediaRequest] = []
        self.closed: list[str] = []
        self._socks: dict[str, socket.socket] = {}

    async def open(self, request: MediaRequest) -> MediaSession:
        self.open_calls.append(request)
        if self.fail:
            raise MediaError(self.fail)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((HOST, 0))
        rtp = bytes([0x80, 96, 0, 1, 0, 0, 0, 0]) + request.ssrc.to_bytes(4, "big") + b"PS"
        sock.sendto(rtp, (request.remote_host, request.remote_port))
        self._socks[request.call_id] = sock
        return MediaSession(request.call_id, HOST, sock.getsockname()[1], request.ssrc)

    async def close(self, call_id: str) -> None:
        sock = self._socks.pop(call_id, None)
        if sock is not None:
            sock.close()
            self.closed.append(call_id)

    def playing(self) -> int:
        return len(self._socks)
