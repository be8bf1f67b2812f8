"""gateway.aio: deadlines that never lose a cancellation.

Python 3.11's ``asyncio.wait_for`` returns the result and drops a ``cancel()`` that meets it
(CPython gh-86296); a GB/T 28181 client's stop hung for ever on that in CI. These tests put
the cancel in exactly that window."""

from __future__ import annotations

import asyncio

import pytest

from gateway.aio import wait_event, within


async def _cancel_as_the_result_arrives(make_wait):  # type: ignore[no-untyped-def]
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(make_wait(fut))
    await asyncio.sleep(0)  # the task waits
    fut.set_result(1)
    await asyncio.sleep(0)  # the result is on its way to the task
    task.cancel()
    return task


async def test_a_cancel_that_meets_the_result_is_kept() -> None:
    task = await _cancel_as_the_result_arrives(lambda fut: within(asyncio.shield(fut), 5))
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancel_that_meets_a_set_event_is_kept() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(wait_event(event, 5))
    await asyncio.sleep(0)
    event.set()  # the task is woken, but has not run yet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_deadlines_and_results() -> None:
    assert await within(asyncio.sleep(0, "ok"), 1) == "ok"
    assert await within(asyncio.sleep(0, "no limit"), None) == "no limit"
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(5), 0.05)
    event = asyncio.Event()
    assert await wait_event(event, 0.05) is False
    event.set()
    assert await wait_event(event, 5) is True


async def test_an_inner_deadline_inside_an_outer_one() -> None:
    """The SIP agent's retransmission waits sit inside the transaction's deadline: the
    outer one expiring is the outer one's TimeoutError, not swallowed by the inner."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            while True:
                try:
                    await within(asyncio.sleep(5), 0.03)
                except TimeoutError:
                    continue
