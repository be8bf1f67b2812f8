"""UDP GSO batches (gateway.relay.udp_batch): real sockets, the kernel's own cutting."""

from __future__ import annotations

import asyncio
import os
import random
import socket

import pytest

from gateway.relay import udp_batch
from gateway.relay.udp_batch import GsoState, UdpBatcher, runs


def test_runs_are_equal_sizes_with_a_shorter_last() -> None:
    assert runs([]) == []
    assert runs([1300] * 5) == [(0, 5)]
    assert runs([1300, 1300, 700, 1300, 1300]) == [(0, 3), (3, 5)]
    assert runs([700, 1300, 1300]) == [(0, 1), (1, 3)]  # a longer one starts a new run
    assert runs([500, 500, 500, 900]) == [(0, 3), (3, 4)]
    many = [1000] * 150
    cut = runs(many)
    assert all(end - start <= udp_batch.MAX_SEGMENTS for start, end in cut)
    assert all(sum(many[s:e]) <= udp_batch.MAX_BYTES for s, e in cut)
    rng = random.Random(3)
    for _ in range(300):
        sizes = [rng.choice([1310, 1310, 1310, 64, 900]) for _ in range(rng.randrange(1, 90))]
        cut = runs(sizes)
        assert [i for s, e in cut for i in range(s, e)] == list(range(len(sizes)))
        for s, e in cut:
            assert all(x == sizes[s] for x in sizes[s : e - 1]) and sizes[e - 1] <= sizes[s]


async def _pair() -> tuple[asyncio.DatagramTransport, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    return transport, rx


def _frame(rng: random.Random) -> list[bytes]:
    """An access unit's SRTP packets: equal fragments, a short last, a small one."""
    return [os.urandom(1310) for _ in range(rng.randrange(1, 40))] + [
        os.urandom(rng.randrange(20, 1310)),
        os.urandom(90),
    ]


async def test_every_datagram_arrives_whole_and_in_order() -> None:
    transport, rx = await _pair()
    gso = GsoState()
    out = UdpBatcher(gso)
    rng = random.Random(1)
    sent: list[bytes] = []
    try:
        for _ in range(40):
            frame = _frame(rng)
            out.send(transport, frame, rx.getsockname())
            sent += frame
        got = [rx.recv(65536) for _ in sent]
        assert got == sent
        assert gso.enabled and gso.batches >= 40 and gso.datagrams > len(sent) // 2
    finally:
        out.close()
        transport.close()
        rx.close()


async def test_a_refused_batch_goes_datagram_by_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    # More segments than any kernel takes in one call: the kernel refuses (EINVAL), the
    # batcher says so once, and every datagram still leaves through the transport.
    monkeypatch.setattr(udp_batch, "MAX_SEGMENTS", 10_000)
    transport, rx = await _pair()
    gso = GsoState()
    out = UdpBatcher(gso)
    try:
        frame = [bytes([i % 256]) * 20 for i in range(300)]
        out.send(transport, frame, rx.getsockname())
        assert [rx.recv(65536) for _ in frame] == frame
        assert not gso.enabled
        again = [b"after" * 50] * 3
        out.send(transport, again, rx.getsockname())  # from now on, one by one
        assert [rx.recv(65536) for _ in again] == again
    finally:
        out.close()
        transport.close()
        rx.close()


async def test_the_duplicate_socket_follows_the_transport_and_is_closed() -> None:
    t1, rx = await _pair()
    t2, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    out = UdpBatcher(GsoState())
    before = len(os.listdir("/proc/self/fd"))
    try:
        out.send(t1, [b"a" * 100, b"b" * 100], rx.getsockname())
        _, port1 = rx.recvfrom(100)[1]
        rx.recv(100)
        out.send(t2, [b"c" * 100, b"d" * 100], rx.getsockname())  # a new nominated pair
        _, port2 = rx.recvfrom(100)[1]
        rx.recv(100)
        assert {port1, port2} == {
            t1.get_extra_info("sockname")[1],
            t2.get_extra_info("sockname")[1],
        }
        assert len(os.listdir("/proc/self/fd")) == before + 1
        out.close()
        assert len(os.listdir("/proc/self/fd")) == before
        assert not t1.is_closing()  # the transport's own socket is untouched
        t1.sendto(b"still", rx.getsockname())
        assert rx.recv(100) == b"still"
    finally:
        out.close()
        t1.close()
        t2.close()
        rx.close()
