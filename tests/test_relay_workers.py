"""Relay worker processes (``relay.workers``, gateway.relay.pool and .worker).

Real worker processes, real aiortc viewers over loopback. What is proved here
beyond tests/test_whep_aiortc_client.py (which runs every viewer test against
two workers too): the hub is fed to each worker once however many viewers it
sends, viewers are spread over the workers, a worker that dies ends its viewers
with a clear reason and is started again, and the framing refuses bad frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from gateway.media.access_unit import AccessUnit
from gateway.relay import wire
from tests.relay_helpers import whep_rig

CAM = "cam-01"
URL = f"/api/v1/streams/{CAM}/whep"


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    relay = {"interfaces": ["127.0.0.1"], "source_wait_s": 2, "workers": 2}
    async with whep_rig(tmp_path / "data", relay, camera=CAM, index=3) as rig:
        yield rig


async def _until(check: Any, timeout: float = 10) -> bool:
    for _ in range(int(timeout / 0.1)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return bool(check())


async def test_each_worker_is_fed_the_hub_once_and_viewers_are_spread(
    rig: dict[str, Any],
) -> None:
    pool = rig["gw"].relay.pool
    assert pool is not None and len(pool.workers) == 2
    viewers = [rig["client"]() for _ in range(20)]
    for v in viewers:
        assert (await v.start()).status_code == 201
    for v in viewers:
        assert await v.wait_frames(10, timeout=20), v.received
    loads = sorted(w.load for w in pool.workers)
    # Least loaded first, but a worker that already has the hub may carry up to
    # SPREAD_SLACK more: 20 viewers end up split, never all on one process.
    assert sum(loads) == 20 and loads[0] >= 20 // 2 - 8 // 2 - 1, loads
    # One subscription per worker on the camera's hub, not one per viewer.
    feeds = [s for s in rig["hub"].subscribers if s.name.startswith("relay-worker-")]
    assert len(feeds) == 2, [s.name for s in rig["hub"].subscribers]
    assert len(rig["hub"].subscribers) == 2
    status = (await rig["http"].get("/api/v1/relay/sessions")).json()
    assert [w["feeds"] for w in status["workers"]["workers"]] == [1, 1]
    # The workers report their peers' figures once a second.
    relay = rig["gw"].relay

    def connected() -> bool:
        return all(
            relay.peers.stats(sid).state == "connected" and relay.peers.stats(sid).units_sent >= 10
            for sid in relay.sessions
        )

    assert await _until(connected, 3), [relay.peers.stats(sid) for sid in relay.sessions]
    status = (await rig["http"].get("/api/v1/relay/sessions")).json()
    assert {s["state"] for s in status["sessions"]} == {"connected"}
    assert all(s["units_sent"] >= 10 for s in status["sessions"]), status["sessions"]

    # The last viewer of a worker leaving ends that worker's feed.
    for v in viewers:
        assert (await v.http.delete(v.location)).status_code == 200
    assert await _until(lambda: not rig["hub"].subscribers), rig["hub"].subscribers


async def test_a_killed_worker_ends_its_viewers_and_is_started_again(
    rig: dict[str, Any],
) -> None:
    relay = rig["gw"].relay
    pool = relay.pool
    first = rig["client"]()
    assert (await first.start()).status_code == 201
    assert await first.wait_frames(10, timeout=20)
    victim = next(w for w in pool.workers if w.load)
    old_pid = victim.proc.pid
    os.kill(old_pid, signal.SIGKILL)
    assert await _until(lambda: not relay.sessions), relay.sessions
    assert relay.closed["relay worker exited"] == 1
    assert not rig["hub"].subscribers, "the dead worker's feed must be gone"
    # It comes back, with a new process, and takes viewers again.
    assert await _until(lambda: victim.alive and victim.proc.pid != old_pid, 15)
    assert pool.restarts == 1
    health = (await rig["http"].get("/api/v1/health")).json()
    assert health["relay_workers"] == {"configured": 2, "running": 2, "restarts": 1}
    for _ in range(4):  # whichever worker each lands on, all of them play
        again = rig["client"]()
        assert (await again.start()).status_code == 201
        assert await again.wait_frames(10, timeout=20), again.received


async def test_stop_signals_to_the_process_group_leave_the_workers_to_the_gateway(
    rig: dict[str, Any],
) -> None:
    # Ctrl-C or systemd's SIGTERM reach the workers too; they must not die of it
    # before the gateway closes them (that would look like a crash and restart them).
    pool = rig["gw"].relay.pool
    viewer = rig["client"]()
    assert (await viewer.start()).status_code == 201
    assert await viewer.wait_frames(10, timeout=20)
    for w in pool.workers:
        os.kill(w.proc.pid, signal.SIGTERM)
        os.kill(w.proc.pid, signal.SIGINT)
    await asyncio.sleep(1)
    assert all(w.alive and w.proc.returncode is None for w in pool.workers)
    assert pool.restarts == 0
    assert await viewer.wait_frames(viewer.received.frames + 20, timeout=5)
    procs = [w.proc for w in pool.workers]
    await rig["gw"].relay.stop()  # and the gateway's own stop ends them
    assert all(p.returncode is not None for p in procs)


async def test_no_worker_running_is_a_clear_503(rig: dict[str, Any]) -> None:
    pool = rig["gw"].relay.pool
    pool._stopping = True  # keep the supervisor from starting them again
    for w in pool.workers:
        os.kill(w.proc.pid, signal.SIGKILL)
    assert await _until(lambda: not any(w.alive for w in pool.workers))
    r = await rig["client"]().start()
    assert r.status_code == 503, r.text
    assert "relay worker" in r.text and "转发进程" in r.text
    assert rig["gw"].relay.rejected["worker"] == 1
    assert not rig["hub"].subscribers
    # The health check says so (a load balancer moves viewers elsewhere), and /metrics.
    health = await rig["http"].get("/api/v1/health")
    assert health.status_code == 503
    assert "no relay worker is running: live video cannot be sent" in health.json()["problems"]
    assert health.json()["relay_workers"] == {"configured": 2, "running": 0, "restarts": 0}
    metrics = (await rig["http"].get("/metrics")).text
    assert "relay_workers_running 0" in metrics


# -- the framing ----------------------------------------------------------------------------
async def _read_all(data: bytes) -> list[tuple[int, Any]]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while True:
        try:
            out.append(await wire.read(reader))
        except asyncio.IncompleteReadError:
            return out


async def test_frames_round_trip() -> None:
    au = AccessUnit(b"\x00\x00\x00\x01\x65abc", 3600, None, Fraction(1, 90000), True, 1.5, 7)
    au2 = AccessUnit(b"\x00\x00\x01\x41x", -5, 9, Fraction(1, 1000), False, 2.0, 0)
    data = wire.control({"op": "open", "sid": "s", "offer": "v=0 中文"})
    data += b"".join(wire.unit(4, au)) + b"".join(wire.unit(5, au2))
    got = await _read_all(data)
    assert got == [
        (wire.CONTROL, {"op": "open", "sid": "s", "offer": "v=0 中文"}),
        (wire.UNIT, (4, au)),
        (wire.UNIT, (5, au2)),
    ]


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00\x00\x00\x01",  # zero length
        b"\xff\xff\xff\xff\x01",  # far too long
        b"\x00\x00\x00\x03\x01{}",  # JSON without op
        b"\x00\x00\x00\x05\x01[1,2]",  # not an object
        b"\x00\x00\x00\x04\x01\xff\xfe\xfd",  # not UTF-8
        b"\x00\x00\x00\x03\x02ab",  # unit too short
        b"\x00\x00\x00\x02\x09x",  # unknown kind
    ],
)
async def test_bad_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(wire.WireError):
        await _read_all(frame)


async def test_random_bytes_never_raise_anything_but_wire_errors() -> None:
    rng = random.Random(28181)
    good = wire.control({"op": "x"}) + b"".join(
        wire.unit(1, AccessUnit(b"\x00" * 40, 1, 1, Fraction(1, 90000), True, 0.0))
    )
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        with contextlib.suppress(wire.WireError):
            await _read_all(bytes(data))


async def test_a_worker_that_talks_nonsense_is_ended_and_its_viewers_told() -> None:
    """The pool's reading side against a stand-in worker (a test-held socket and a
    real process): a malformed message kills the process and ends its viewers."""
    from gateway.relay.peers import PeerSettings
    from gateway.relay.pool import WorkerPool, _Worker

    ended: list[tuple[str, str]] = []
    pool = WorkerPool(1, PeerSettings(), lambda sid, reason: ended.append((sid, reason)))
    w: _Worker = pool.workers[0]
    ours, theirs = socket.socketpair()
    w.reader, w.writer = await asyncio.open_connection(sock=ours)
    w.proc = await asyncio.create_subprocess_exec("sleep", "60")
    w.alive = True
    w.sids["viewer-1"] = None  # type: ignore[assignment]  # a viewer without a feed
    reading = asyncio.create_task(pool._read(w))
    _, peer = await asyncio.open_connection(sock=theirs)
    peer.write(wire.control({"op": "stats", "peers": {"viewer-1": "not a row"}}))
    await peer.drain()
    await asyncio.wait_for(reading, 10)
    assert w.proc.returncode is not None, "the worker process must be ended"
    assert not w.alive
    assert ended == [("viewer-1", "relay worker exited")]
    peer.close()
