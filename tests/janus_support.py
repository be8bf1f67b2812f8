"""Debian's Janus for tests: config written into a temp dir, HTTP transport only
(127.0.0.1, a free port), the streaming plugin only, no IPv6, no mDNS, no STUN/TURN.

ICE: libnice (Janus 1.1.2) never gathers loopback candidates, and its checks to a
127.0.0.1 peer go unanswered, so Janus and the viewers use this machine's own first
non-loopback IPv4 address (``ice_enforce_list``); the traffic still never leaves
the machine.

Only the streaming plugin and the HTTP transport are visible to it: its plugin and
transport folders are temp dirs holding a symlink to each one library.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

JANUS = "/usr/bin/janus"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _free_udp_range(width: int = 200) -> tuple[int, int]:
    """A UDP port range nobody seems to use (Janus's RTP/ICE ports), picked at random."""
    import random

    for _ in range(50):
        start = random.randrange(30000, 59000, 2)
        ok = True
        for port in (start, start + width // 2, start + width - 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start, start + width - 1
    raise RuntimeError("no free UDP range for Janus")


def host_ip() -> str:
    """This machine's first non-loopback IPv4 address.

    Janus (libnice) never gathers loopback candidates, so its ICE runs on this one
    address; traffic to a local address still never leaves the machine.
    """
    import ifaddr

    # The address the kernel would send from (a UDP connect sends nothing): the primary
    # interface, not a bridge that happens to be listed first.
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))
        ip = str(s.getsockname()[0])
        if not ip.startswith("127.") and ip != "0.0.0.0":
            return ip
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                return ip.ip
    return _dummy_address()


DUMMY_IF = "gwtest-sfu0"  # interface names: at most 15 characters
DUMMY_IP = "192.0.2.254"  # TEST-NET-1 (RFC 5737): routes nowhere


def _dummy_address() -> str:
    """A machine with only loopback (a bare CI box) gets a dummy interface of its own.

    A veth pair whose two ends stay on this machine (no bridge, no route out): its /32
    is reached only locally. Needs root, as CI runs.
    """
    if subprocess.run(["ip", "addr", "show", DUMMY_IF], capture_output=True).returncode:
        for cmd in (
            ["ip", "link", "add", DUMMY_IF, "type", "veth", "peer", "name", DUMMY_IF + "p"],
            ["ip", "addr", "add", f"{DUMMY_IP}/32", "dev", DUMMY_IF],
            ["ip", "link", "set", DUMMY_IF + "p", "up"],
            ["ip", "link", "set", DUMMY_IF, "up"],
        ):
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(
                    f"Janus needs a non-loopback IPv4 address and none could be made: "
                    f"{' '.join(cmd)}: {out.stderr.strip()}"
                )
    return DUMMY_IP


class JanusServer:
    """One ``janus`` process; ``url`` is its HTTP API (``http://127.0.0.1:PORT/janus``)."""

    def __init__(self, workdir: Path, *, api_secret: str, admin_key: str) -> None:
        self.dir = workdir
        self.api_secret = api_secret
        self.admin_key = admin_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "janus.log"

    def _write_config(self) -> Path:
        conf, plugins, transports = self.dir / "conf", self.dir / "plugins", self.dir / "transports"
        for d in (conf, plugins, transports):
            d.mkdir(parents=True, exist_ok=True)
        for src, dst in (
            (LIBDIR / "plugins/libjanus_streaming.so", plugins / "libjanus_streaming.so"),
            (LIBDIR / "transports/libjanus_http.so", transports / "libjanus_http.so"),
        ):
            if not dst.exists():
                dst.symlink_to(src)
        low, high = _free_udp_range()
        (conf / "janus.jcfg").write_text(
            f"""general: {{
    configs_folder = "{conf}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{self.dir}/none"
    loggers_folder = "{self.dir}/none"
    debug_level = 4
    api_secret = "{self.api_secret}"
    session_timeout = 60
    server_name = "gateway-test-janus"
}}
media: {{
    ipv6 = false
    rtp_port_range = "{low}-{high}"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "{host_ip()}"
    ignore_mdns = true
    full_trickle = false
}}
plugins: {{
}}
transports: {{
}}
events: {{
    broadcast = false
}}
"""
        )
        (conf / "janus.transport.http.jcfg").write_text(
            f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {self.port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
"""
        )
        (conf / "janus.plugin.streaming.jcfg").write_text(
            f"""general: {{
    admin_key = "{self.admin_key}"
    rtp_port_range = "{low + 100}-{high}"
    events = false
}}
"""
        )
        return conf

    def start(self, timeout: float = 20.0) -> JanusServer:
        conf = self._write_config()
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [JANUS, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-o"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(
                    self.url,
                    json={"janus": "info", "transaction": "t", "apisecret": self.api_secret},
                    timeout=1,
                )
                if r.status_code == 200 and "janus.plugin.streaming" in r.text:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"janus did not answer within {timeout} s: {self.tail()}")

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): a hung Janus, its sockets open but silent."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)  # a paused Janus cannot exit
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): what a crash or a power cut looks like to viewers."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""
