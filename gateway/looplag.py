"""The ``looplag`` part: how late the event loop runs what is due (its lag).

Everything on the network side (WHEP, the cascade, the API's async endpoints) shares
one asyncio loop; a blocking call on it (SQLite, a file read) delays all of them. A
task asks to wake every :data:`INTERVAL_S` and records how late it woke; ``/metrics``
shows the p50, p99 and max over the last :data:`WINDOW` samples (one minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator

from gateway.metrics import Sample

INTERVAL_S = 0.1
WINDOW = 600  # samples: the last minute


class LoopLag:
    """Samples the event loop's lag while the gateway runs."""

    def __init__(self) -> None:
        self.samples: deque[float] = deque(maxlen=WINDOW)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + INTERVAL_S
            await asyncio.sleep(INTERVAL_S)
            self.samples.append(max(0.0, time.perf_counter() - due))

    def quantiles(self) -> dict[str, float]:
        """p50, p99 and max lag in seconds over the window (zeros before any sample)."""
        data = sorted(self.samples)
        if not data:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        pick = lambda q: data[min(len(data) - 1, int(q * len(data)))]  # noqa: E731
        return {"p50": pick(0.5), "p99": pick(0.99), "max": data[-1]}

    def metrics(self) -> Iterator[Sample]:
        q = self.quantiles()
        for label, name in (("0.5", "p50"), ("0.99", "p99")):
            yield Sample(
                "event_loop_lag_seconds",
                round(q[name], 6),
                {"quantile": label},
                help="How late the event loop ran a timer, over the last minute",
            )
        yield Sample(
            "event_loop_lag_max_seconds",
            round(q["max"], 6),
            help="The event loop's worst lag over the last minute",
        )
