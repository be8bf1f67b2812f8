"""Each ingest shuts down only its own camera connection, however many share an address.

An NVR serves all its channels (main and sub of each) on one host:port, and the
manager opens them together. The watchdog and a stopping stream shut the session's
TCP socket down to unstick FFmpeg; that must never touch a sibling's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from gateway.config import StreamSettings
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource
from gateway.streams.sockets import tcp_table
from tests.rtsp_support import RtspTestServer, make_clip, until

STREAMS = 8
ROUNDS = 50
LANES = 5


def _settings() -> StreamSettings:
    return StreamSettings(
        open_timeout_s=5, read_timeout_s=5, stall_timeout_s=5, backoff_initial_s=0.2
    )


def _established_to(port: int) -> int:
    """Our side's ESTABLISHED connections to the camera's ``port`` (all in this process).

    Our side, not the camera's: ``shutdown(2)`` moves the shut socket to FIN_WAIT1 in the
    calling thread, while the camera side leaves ESTABLISHED only when its softirq has
    run the FIN, which a loaded machine defers (CI once saw it a moment late).
    """
    return sum(1 for _, remote, state in tcp_table().values() if remote == port and state == 1)


async def _round(server: RtspTestServer, n: int) -> None:
    """Open STREAMS ingests at once, fault one, check the others kept their sessions."""
    sources = [
        RtspSource("nvr", f"ch{i}", f"{server.url}?ch={i}", _settings()) for i in range(STREAMS)
    ]
    hubs = [Hub(s.name) for s in sources]
    connections = server.connections
    tasks = [asyncio.create_task(s.run(h)) for s, h in zip(sources, hubs, strict=True)]
    try:
        # Opened = connected, RTSP session playing, FFmpeg's probe done.
        await until(lambda: all(s._session and s._session.opened for s in sources), 30, "opens")
        await until(lambda: server.sessions == STREAMS, 10, "one session per stream")
        victim = sources[n % STREAMS]
        session = victim._session
        assert session is not None
        if n % 2:  # what the watchdog does to a stalled session
            session.abort()
        else:  # what the manager does when the stream's last consumer has left
            tasks[n % STREAMS].cancel()
            await until(lambda: session.stop.is_set(), 10, "the cancelled stream's abort")
        # shutdown(2) ends ESTABLISHED at once for exactly the sockets that were shut,
        # before any thread has to notice.
        assert _established_to(server.port) == STREAMS - 1, f"round {n}: a sibling was shut"
        await until(lambda: session.done.is_set(), 10, "the faulted session to end")
        await until(lambda: server.sessions == STREAMS - 1, 10, "its session to close")
        await asyncio.sleep(0.1)  # a sibling that lost its socket would have failed by now
        others = [(s, s._session) for s in sources if s is not victim]
        assert all(s is not None and not s.done.is_set() for _, s in others), f"round {n}"
        assert [src.sessions for src, _ in others] == [1] * (STREAMS - 1), f"round {n}"
        assert server.sessions == STREAMS - 1, f"round {n}: a sibling lost its session"
        assert server.connections == connections + STREAMS, f"round {n}: reconnects"
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    await until(lambda: server.sessions == 0, 10, "every session closed")


async def _lane(rounds: range) -> None:
    server = RtspTestServer(make_clip("h264", 320, 180, frames=25))
    try:
        for n in rounds:
            await _round(server, n)
    finally:
        server.close()


async def test_streams_sharing_one_address_never_shut_each_others_connection() -> None:
    # Lanes (one camera address each) run side by side only to keep the wall time low;
    # every round of every lane opens its STREAMS streams at once.
    start = time.monotonic()
    await asyncio.gather(*(_lane(range(i, ROUNDS, LANES)) for i in range(LANES)))
    took = time.monotonic() - start
    print(f"{ROUNDS} rounds of {STREAMS} streams on one address each: {took:.1f} s")
