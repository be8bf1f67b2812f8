from __future__ import annotations

import asyncio
import threading
from fractions import Fraction

import pytest

from gateway.media.access_unit import AccessUnit
from gateway.streams.hub import Hub, HubClosed

TB = Fraction(1, 90000)


def au(i: int, key: bool) -> AccessUnit:
    return AccessUnit(b"x" * 10, i * 3600, i * 3600, TB, key, 0.0)


def publish_gops(hub: Hub, gops: int, size: int, start: int = 0) -> int:
    i = start
    for _ in range(gops):
        for k in range(size):
            hub.publish(au(i, k == 0))
            i += 1
    return i


def test_viewer_joining_late_starts_on_keyframe() -> None:
    hub = Hub("cam/main")
    publish_gops(hub, 1, 5)
    hub.publish(au(5, True))
    hub.publish(au(6, False))
    sub = hub.subscribe("late")
    first = sub.get_nowait()
    assert first is not None and first.keyframe and first.pts == 5 * 3600
    assert sub.get_nowait().pts == 6 * 3600
    assert sub.get_nowait() is None


def test_subscriber_before_any_keyframe_waits_for_one() -> None:
    hub = Hub("cam/main")
    sub = hub.subscribe()
    hub.publish(au(0, False))
    assert sub.get_nowait() is None
    hub.publish(au(1, True))
    assert sub.get_nowait().keyframe


def test_slow_subscriber_drops_to_next_keyframe_without_hurting_others() -> None:
    hub = Hub("cam/main")
    slow = hub.subscribe("slow", maxsize=8)
    fast = hub.subscribe("fast", maxsize=1000)
    publish_gops(hub, 4, 5)  # 20 units: slow overflows
    got_fast = []
    while (x := fast.get_nowait()) is not None:
        got_fast.append(x)
    assert len(got_fast) == 20
    got_slow = []
    while (x := slow.get_nowait()) is not None:
        got_slow.append(x)
    assert slow.dropped > 0
    assert len(got_slow) <= 8
    assert got_slow[0].keyframe  # resumed on a keyframe: no broken picture
    pts = [x.pts for x in got_slow]
    assert pts == sorted(pts)


async def test_async_get_wakes_on_publish_from_another_thread() -> None:
    hub = Hub("cam/main")
    sub = hub.subscribe()
    t = threading.Timer(0.05, lambda: hub.publish(au(0, True)))
    t.start()
    got = await asyncio.wait_for(sub.get(), 2)
    assert got.keyframe


async def test_close_ends_pending_reads() -> None:
    hub = Hub("cam/main")
    sub = hub.subscribe()
    task = asyncio.create_task(sub.get())
    await asyncio.sleep(0.01)
    hub.close()
    with pytest.raises(HubClosed):
        await asyncio.wait_for(task, 2)


def test_blocking_get_times_out_and_unsubscribe_removes() -> None:
    hub = Hub("cam/main")
    sub = hub.subscribe()
    assert sub.get_blocking(0.05) is None
    sub.close()
    assert hub.subscribers == []
    with pytest.raises(HubClosed):
        sub.get_blocking(0.01)
