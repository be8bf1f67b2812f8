"""Find and shut down the TCP sockets an FFmpeg demuxer opened (Linux ``/proc``).

FFmpeg owns its sockets and PyAV offers no safe way to interrupt a read from another
thread. Shutting the socket down (``shutdown(2)`` on a duplicate of its descriptor)
makes the blocked read fail at once, and FFmpeg then cleans up normally. Sockets are
identified by inode: the ones that appeared while the container was opening and
that are connected to the camera's address. Elsewhere than Linux every function
here degrades to doing nothing, and FFmpeg's own timeout remains.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from urllib.parse import urlsplit

_FD_DIR = "/proc/self/fd"


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


def _tcp_remotes() -> dict[int, tuple[str, int]]:
    """inode → (remote address, port) for this process's TCP sockets."""
    out: dict[int, tuple[str, int]] = {}
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) < 10:
                        continue
                    addr_hex, port_hex = fields[2].split(":")
                    out[int(fields[9])] = (_decode_addr(addr_hex), int(port_hex, 16))
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


def new_inodes_to(before: dict[int, int], addresses: set[str], port: int) -> set[int]:
    """Sockets opened since ``before`` that are connected to ``addresses:port``."""
    remotes = _tcp_remotes()
    return {
        inode
        for inode in socket_inodes()
        if inode not in before
        and remotes.get(inode, ("", 0))[1] == port
        and remotes[inode][0] in addresses
    }


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
