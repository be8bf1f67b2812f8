"""A camera that comes back is streaming again within seconds, whatever the backoff phase.

The camera (``tests.rtsp_support.RtspTestServer``) goes down (connections refused)
and its port opens again at a random moment of the ingest's backoff: during the
first wait, a moment after a refused attempt, or later. The case that once cost a
whole backoff: the port opened just after an attempt was refused, so the backoff
began with the port already open and took it for "answers but RTSP fails".
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time

from gateway.config import StreamSettings
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource
from tests.rtsp_support import RtspTestServer, make_clip, until

CYCLES = 30
LANES = 5  # cameras cycled side by side, to keep the wall time low
PROMISE_S = 3.0  # what the issue asks for; counted and printed
# Asserted, and generous: a return missed after a refused attempt sleeps out the next
# backoff, 2 x 4 s less 20 % jitter = 6.4 s at least, far above it.
BOUND_S = 5.0
SETTINGS = StreamSettings(
    open_timeout_s=5, read_timeout_s=5, stall_timeout_s=5, backoff_initial_s=4, backoff_max_s=8
)


async def _after_a_refused_attempt(source: RtspSource, attempts: int) -> None:
    """Return the moment an attempt made while the port is shut has failed."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        session = source._session
        if source.sessions > attempts and session is not None and session.done.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("no refused attempt within 15 s")


async def _lane(seed: int, cycles: int, took: list[tuple[str, float]]) -> None:
    rng = random.Random(seed)
    server = RtspTestServer(make_clip("h264", 320, 180, frames=25))
    hub = Hub("cam/main")
    source = RtspSource("cam", "main", server.url, SETTINGS)
    task = asyncio.create_task(source.run(hub))
    try:
        for _ in range(cycles):
            await until(lambda: source.state == "online" and hub.gop, 15, "streaming")
            server.fault("offline")
            # The session has ended: the backoff begins now, and looks at the port at once.
            await until(lambda: source._session is None, 10, "the session to end")
            if rng.random() < 1 / 3:
                phase = "just after a refused attempt"
                await _after_a_refused_attempt(source, source.sessions)
            else:
                # The first attempt comes at 3.2-4 s. From 0.5 s on: the backoff has
                # seen the port shut by then (a port open before it looked is a
                # camera that dropped the stream but still answers: plain backoff).
                wait = rng.uniform(0.5, 4.5)
                phase = f"{wait:.2f} s into the outage"
                await asyncio.sleep(wait)
            epoch = source.epoch
            server.fault("online")
            up = time.monotonic()
            await until(
                lambda e=epoch: source.epoch > e and hub.gop and hub.gop[0].epoch == source.epoch,
                15,
                "streaming again",
            )
            took.append((phase, time.monotonic() - up))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        server.close()


async def test_a_returning_camera_streams_again_within_seconds_at_any_backoff_phase() -> None:
    took: list[tuple[str, float]] = []
    seed = random.randrange(1_000_000)
    print(f"\nseed {seed}")  # shown with a failure too: replay it by setting seed
    start = time.monotonic()
    await asyncio.gather(*(_lane(seed + i, CYCLES // LANES, took) for i in range(LANES)))
    figures = sorted(t for _, t in took)
    print(
        f"\nseed {seed}: {len(took)} returns in {time.monotonic() - start:.1f} s; back after "
        f"median {statistics.median(figures):.2f} s, max {figures[-1]:.2f} s, "
        f"{sum(t <= PROMISE_S for t in figures)} within {PROMISE_S} s"
    )
    for phase, t in sorted(took, key=lambda p: -p[1])[:5]:
        print(f"  {t:.2f} s  ({phase})")
    assert len(took) == CYCLES
    slow = [(phase, round(t, 2)) for phase, t in took if t > BOUND_S]
    assert not slow, f"seed {seed}: back later than {BOUND_S} s after the port opened: {slow}"
