"""The uplink's event pump never misses a wake-up (found by bench/bench_city.py).

An event appended while the pump read its outbox (an empty read) used to set the wake-up
flag before the pump cleared it, so the event waited for the next one: the last alarm of
a burst could sit in a village's outbox for hours. The outbox read here appends an event
at exactly that moment; the pump must send it at once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.city_swarm import Village


async def test_an_event_appended_during_an_empty_read_is_sent(tmp_path: Path) -> None:
    spec = {
        "id": "village-1",
        "name": "东村",
        "parent_url": "ws://127.0.0.1:9/",
        "token": "t",
        "cameras": 2,
    }
    village = Village(spec, tmp_path)
    uplink = village.uplink
    uplink._loop = asyncio.get_running_loop()
    sent: list[Any] = []

    async def send_text(msg: Any) -> None:
        sent.extend(msg.items)

    uplink.send_text = send_text  # type: ignore[method-assign]
    real_read = uplink.outbox.read
    raced = 0

    def read(after: int, limit: int) -> list[Any]:
        nonlocal raced
        batch = real_read(after, limit)
        if not batch and raced < 3:
            raced += 1
            village.publish_motion()  # appended after the read saw nothing
            time.sleep(0.1)  # the wake-up is set on the loop before the pump resumes
        return batch

    uplink.outbox.read = read  # type: ignore[method-assign]
    pump = asyncio.create_task(uplink._pump_events())
    try:
        deadline = time.monotonic() + 10
        while len(sent) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [item.event.data["seq"] for item in sent] == [1, 2, 3]
    finally:
        pump.cancel()
