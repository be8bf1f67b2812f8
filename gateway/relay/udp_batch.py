"""Several UDP datagrams to one address in one system call (Linux UDP GSO).

A viewer's RTP packets of one access unit go to one address, and most of them are the
same size (the packetiser cuts large NAL units into equal fragments; SRTP adds a fixed
tag). Linux (4.18+) sends such a run with one ``sendmsg`` carrying ``UDP_SEGMENT``: the
kernel cuts the buffer into datagrams of that size, the last one may be shorter. On the
wire, and for every receiver, they are ordinary datagrams. Measured on loopback: 3.8 µs
of the sender's CPU per datagram with ``sendto``, 1.0 µs in runs of ten
(docs/benchmarks.md, relay).

:class:`UdpBatcher` sends through a duplicate of the asyncio transport's socket (same
socket, own descriptor; asyncio does not expose ``sendmsg``). Where GSO is refused
(another kernel or platform, a device without checksum offload) it says so once and
every datagram goes through the transport's ``sendto`` as before; so do the rest of a
batch the socket could not take at once (the transport buffers them).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Sequence

log = logging.getLogger(__name__)

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h
MAX_SEGMENTS = 64  # the kernel's UDP_MAX_SEGMENTS (older kernels: 64)
MAX_BYTES = 60_000  # one GSO buffer stays below 64 KiB with headers
REFUSED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}


class GsoState:
    """Whether this process may use GSO; cleared for good at the first refusal."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.platform == "linux"
        self.batches = 0  # sendmsg calls that carried more than one datagram
        self.datagrams = 0  # … and the datagrams in them


def runs(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges GSO can send whole: equal sizes, a shorter last."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(sizes)
    while i < n:
        size = sizes[i]
        j, total = i + 1, size
        while j < n and sizes[j] == size and j - i < MAX_SEGMENTS and total + size <= MAX_BYTES:
            total += size
            j += 1
        if j < n and sizes[j] < size and j - i < MAX_SEGMENTS and total + sizes[j] <= MAX_BYTES:
            j += 1
        out.append((i, j))
        i = j
    return out


class UdpBatcher:
    """One viewer's sends to the nominated ICE pair's address; see the module docstring."""

    def __init__(self, gso: GsoState) -> None:
        self.gso = gso
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None

    def _bind(self, transport: asyncio.DatagramTransport) -> None:
        if transport is self._transport:
            return
        self.close()
        self._transport = transport
        raw = transport.get_extra_info("socket")
        if raw is not None and self.gso.enabled:
            fd = os.dup(raw.fileno())
            self._sock = socket.socket(raw.family, raw.type, raw.proto, fileno=fd)

    def send(
        self, transport: asyncio.DatagramTransport, datagrams: list[bytes], addr: tuple[str, int]
    ) -> None:
        self._bind(transport)
        sock, i = self._sock, 0
        if sock is not None and self.gso.enabled and not transport.is_closing():
            try:
                for start, end in runs([len(d) for d in datagrams]):
                    i = start
                    if end - start == 1:
                        sock.sendto(datagrams[start], addr)
                    else:
                        segment = len(datagrams[start]).to_bytes(2, sys.byteorder)
                        sock.sendmsg(
                            [b"".join(datagrams[start:end])],
                            [(SOL_UDP, UDP_SEGMENT, segment)],
                            0,
                            addr,
                        )
                        self.gso.batches += 1
                        self.gso.datagrams += end - start
                    i = end
            except BlockingIOError:
                pass  # the socket is full: the transport buffers the rest
            except OSError as exc:
                if exc.errno in REFUSED:
                    self.gso.enabled = False
                    log.warning("UDP GSO refused here (%s): sending datagram by datagram", exc)
                # Anything else (an ICMP error from the viewer, say) is the transport's
                # to report: it sees the same error on the datagrams below.
        for data in datagrams[i:]:
            transport.sendto(data, addr)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._transport = None
