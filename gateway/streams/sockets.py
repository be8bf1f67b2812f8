"""Know and shut down the TCP connections an FFmpeg demuxer opened (Linux ``/proc``).

FFmpeg owns its sockets and PyAV offers no safe way to interrupt a read from another
thread. Shutting the socket down (``shutdown(2)`` on a duplicate of its descriptor)
makes the blocked read fail at once, and FFmpeg then cleans up normally.

Which sockets are a session's own must be certain: an NVR serves all its channels,
main and sub, on one host:port, and the manager opens them together. A socket in
``/proc`` does not say which thread created it, so the connect step is serialised per
camera address instead: an opening session first takes its *turn* for that
address, and while it holds the turn no other session of this process connects
there. Every new socket to the address seen during the turn is therefore the turn
holder's. The turn passes on as soon as the holder's connection exists (any waiting
session looks for it), so opens on one address still overlap everywhere but in the
connect itself. Bare reachability probes (:func:`gateway.streams.reach.port_open`)
register their socket with :func:`probe_socket` so that no session takes one for its
own. Elsewhere than Linux nothing is found, and FFmpeg's own timeout remains.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

_FD_DIR = "/proc/self/fd"
_SYN_SENT = 2  # tcp_states.h: a connect() still waiting for the camera's answer
# How often a session waiting for its turn looks for the holder's connection.
_POLL_FIRST_S = 0.002
_POLL_MAX_S = 0.05

Remote = tuple[str, int]


def remote_of(url: str) -> tuple[set[str], int] | None:
    """The camera's addresses and port for an ``rtsp://`` URL, or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 554
        if not host:
            return None
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        return None
    return {str(ipaddress.ip_address(info[4][0])) for info in infos}, port


def socket_inodes() -> dict[int, int]:
    """inode → fd for every socket this process holds."""
    out: dict[int, int] = {}
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return out
    for name in names:
        try:
            link = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out[int(link[8:-1])] = int(name)
    return out


def tcp_table() -> dict[int, tuple[str, int, int]]:
    """inode → (remote address, remote port, TCP state) for the TCP sockets in ``/proc``."""
    out: dict[int, tuple[str, int, int]] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    addr_hex, port_hex = fields[2].split(":")
                    state = int(fields[3], 16)
                    out[int(fields[9])] = (_decode_addr(addr_hex), int(port_hex, 16), state)
        except (OSError, ValueError):
            continue
    return out


def _decode_addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    # /proc stores each 32-bit word in host (little-endian) order.
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    addr = ipaddress.ip_address(raw)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return str(addr)


# Shared by every session of the process; guarded by _lock.
_lock = threading.Lock()
_turns: dict[Remote, CameraConnection] = {}  # address → the session connecting there now
_probes: set[int] = set()  # inodes of reachability probes, never a session's


class CameraConnection:
    """The TCP connection(s) one ingest session's demuxer opened to its camera.

    Use from the session's worker thread: ``with conn.opening(stop): av.open(...)``,
    and :meth:`close` once the container is closed. :meth:`shutdown` may be called
    from any thread.
    """

    def __init__(self, url: str) -> None:
        target = remote_of(url)
        self._remotes: set[Remote] = {(a, target[1]) for a in target[0]} if target else set()
        self.inodes: set[int] = set()
        self._before: set[int] = set()
        self._holding = False
        self._looked_at = 0.0

    @contextlib.contextmanager
    def opening(self, stop: threading.Event) -> Iterator[bool]:
        """Hold this address's turn around the demuxer's open (yields False if stopped first).

        The turn ends when the connection is seen (by a session waiting for it) or
        when the block ends, whichever comes first.
        """
        got = self._take_turn(stop)
        try:
            yield got
        finally:
            with _lock:
                if self._holding:
                    self._look(tcp_table())
                    self._leave()

    def shutdown(self) -> int:
        """Shut this session's sockets down (a blocked read then fails); how many were."""
        with _lock:
            if self._holding:
                self._look(tcp_table())
            inodes = set(self.inodes)
        return shutdown(inodes)

    def close(self) -> None:
        """Forget the sockets (the container that owned them is closed)."""
        with _lock:
            if self._holding:
                self._leave()
            self.inodes.clear()

    # -- the turn (all under _lock) ---------------------------------------------------------
    def _take_turn(self, stop: threading.Event) -> bool:
        if not self._remotes:
            return True  # nothing to tell apart
        pause = _POLL_FIRST_S
        while not stop.is_set():
            with _lock:
                holders = {_turns[r] for r in self._remotes if r in _turns}
                if holders:
                    table = tcp_table()
                    for holder in holders:
                        holder._look(table, settle=True)
                if not any(r in _turns for r in self._remotes):
                    self._before = set(socket_inodes())
                    for r in self._remotes:
                        _turns[r] = self
                    self._holding = True
                    return True
            stop.wait(pause)
            pause = min(pause * 2, _POLL_MAX_S)
        return False

    def _look(self, table: dict[int, tuple[str, int, int]], settle: bool = False) -> None:
        """Claim the new sockets to our camera; with ``settle``, pass the turn on if connected.

        A camera with one address gets one socket from FFmpeg, so the turn passes as
        soon as it exists. For several addresses FFmpeg may try them one after the
        other, so the turn waits for an established connection.
        """
        now = time.monotonic()
        if settle and now - self._looked_at < _POLL_FIRST_S:
            return  # many waiters: one look per poll interval is enough
        self._looked_at = now
        new = {
            inode
            for inode, entry in table.items()
            if entry[:2] in self._remotes
            and inode not in self._before
            and inode not in _probes
            and inode not in self.inodes
        }
        if new:  # the table is the whole network namespace's: keep this process's only
            self.inodes |= new & socket_inodes().keys()
        if not settle or not self.inodes:
            return
        states = [table[i][2] for i in self.inodes if i in table]
        if len(self._remotes) == 1 or any(state != _SYN_SENT for state in states):
            self._leave()

    def _leave(self) -> None:
        for r in self._remotes:
            if _turns.get(r) is self:
                del _turns[r]
        self._holding = False


@contextlib.contextmanager
def probe_socket(sock: socket.socket) -> Iterator[None]:
    """Mark a bare reachability probe's socket so no session claims it as its own."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        yield
        return
    with _lock:
        _probes.add(inode)
    try:
        yield
    finally:
        with _lock:
            _probes.discard(inode)


def shutdown(inodes: set[int]) -> int:
    """Shut down the sockets with these inodes; returns how many were found."""
    if not inodes:
        return 0
    done = 0
    for inode, fd in socket_inodes().items():
        if inode not in inodes:
            continue
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            if os.fstat(dup).st_ino != inode:
                continue  # the descriptor was reused meanwhile
            sock = socket.socket(fileno=dup)
            dup = -1  # the socket object owns it now
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
            sock.close()
        finally:
            if dup >= 0:
                os.close(dup)
    return done
