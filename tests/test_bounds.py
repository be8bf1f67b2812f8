"""Every buffer on a media or cascade path is bounded in bytes, and a drop is counted.

The assembler gets real Annex B NAL units, the downlink real protocol frames through
its own frame decoder, the hub and the pre-roll ring real access units.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

from gateway.cascade import protocol as p
from gateway.cascade.downlink import Downlink
from gateway.cascade.session import ChildSession
from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.media.access_unit import AccessUnit
from gateway.media.annexb import join_annexb
from gateway.media.assembler import MAX_PREFIX_BYTES, MAX_UNIT_BYTES, AccessUnitAssembler
from gateway.recorder.triggers import RING_MAX_BYTES, GopRing
from gateway.store.db import Database
from gateway.streams.hub import Hub

IDR = b"\x65\x88\x84\x21"
SLICE = b"\x41\x9a\x21"
SEI = b"\x06\x05\x01"
TB = Fraction(1, 90000)


def test_a_camera_repeating_one_timestamp_cannot_grow_the_assembler() -> None:
    asm = AccessUnitAssembler("h264", merge=True)
    piece = join_annexb([SLICE + b"\x00" * 256 * 1024])  # 256 KB slices
    out = asm.push(join_annexb([IDR]), 0, 0, True)
    for _ in range(200):  # 50 MB, all "the same picture"
        out += asm.push(piece, 3600, 3600, False)
        held = len(asm._pending.data) if asm._pending else 0
        assert held <= MAX_UNIT_BYTES
    assert asm.oversize_dropped >= 2
    # What depended on the dropped picture is not emitted; output resumes at a keyframe.
    after = asm.push(piece, 7200, 7200, False) + asm.push(join_annexb([IDR]), 10800, 10800, True)
    after += asm.push(piece, 14400, 14400, False)
    assert [u.pts for u in after] == [10800] and after[0].keyframe
    assert all(len(u.data) <= MAX_UNIT_BYTES + 1024 for u in out + after)


def test_a_flood_of_non_picture_data_is_bounded_and_costs_no_picture() -> None:
    asm = AccessUnitAssembler("h264")
    sei = join_annexb([SEI + b"\x00" * 64 * 1024])
    for _ in range(100):  # 6.4 MB of SEI without a picture
        assert asm.push(sei, 0, 0, False) == []
        assert asm._prefix_bytes <= MAX_PREFIX_BYTES
    assert asm.oversize_dropped >= 5
    (unit,) = asm.push(join_annexb([IDR]), 0, 0, True)
    assert unit.keyframe and len(unit.data) <= MAX_PREFIX_BYTES + 1024
    assert len(asm.push(join_annexb([SLICE]), 3600, 3600, False)) == 1


def au(size: int, key: bool, i: int) -> AccessUnit:
    return AccessUnit(b"\x00" * size, i * 3600, i * 3600, TB, key, 0.0, 1)


def test_a_subscriber_holds_at_most_its_bytes_and_restarts_on_a_keyframe() -> None:
    hub = Hub("cam/main")
    sub = hub.subscribe("slow", maxsize=10_000)
    sub.max_bytes = 4 * 1024 * 1024
    for i in range(400):  # 1 MB units, a keyframe every 3: a 4K camera, a stuck reader
        hub.publish(au(1024 * 1024, i % 3 == 0, i))
        assert sub.bytes <= sub.max_bytes
    assert sub.dropped > 300
    first = sub.get_nowait()
    assert first is not None and first.keyframe
    # GOPs bigger than the bound: nothing half-done is kept, the reader waits for a key.
    sub10 = hub.subscribe("slow-10", maxsize=10_000)
    sub10.max_bytes = 4 * 1024 * 1024
    for i in range(400, 800):
        hub.publish(au(1024 * 1024, i % 10 == 0, i))
        assert sub10.bytes <= sub10.max_bytes
    queued = []
    while (x := sub10.get_nowait()) is not None:
        queued.append(x)
    assert not queued or queued[0].keyframe
    # A late subscriber never gets a cached GOP longer than the bound (none rather than
    # a hole): the hub drops its cache and the newcomer waits for the next keyframe.
    long = Hub("cam/long")
    for i in range(80):
        long.publish(au(1024 * 1024, i == 0, i))
    assert long.gop == [] and long.gop_overflows == 1
    late = long.subscribe("late")
    long.publish(au(1000, False, 81))
    assert late.get_nowait() is None
    long.publish(au(1000, True, 82))
    got = late.get_nowait()
    assert got is not None and got.keyframe


def test_the_pre_roll_ring_is_bounded_even_for_one_endless_gop() -> None:
    ring = GopRing()
    for i in range(100):  # 1 MB units, one keyframe only
        ring.add(au(1024 * 1024, i == 0, i), keep_s=10)
    assert ring.overflows >= 1
    assert sum(len(u.data) for u in ring._units) <= RING_MAX_BYTES


async def test_a_child_body_whose_reader_falls_behind_is_ended_and_counted(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "gw.db")
    down = Downlink(SimpleNamespace(db=db, settings=parse_settings({}), bus=EventBus(db)))
    session = ChildSession(down, ws=None, name="village-1")
    chunk = b"\x01" * 60_000

    # A reader keeping up: 100 MB pass through, never more than the bound waiting.
    ch = session.open_channel()
    ch.max_buffered = 1024 * 1024
    got = 0

    async def read() -> None:
        nonlocal got
        while (c := await ch.get()) is not None:
            got += len(c)

    reader = asyncio.create_task(read())
    for _ in range(1700):
        down._on_binary(session, p.encode_data(ch.number, chunk))
        assert ch.buffered <= ch.max_buffered
        await asyncio.sleep(0)  # the event loop runs the reader between frames
    ch.end("done")
    await asyncio.wait_for(reader, 10)
    assert got == 1700 * len(chunk) and down.transfers_dropped == 0

    # A reader that does not read: the body ends with the reason, and it is counted.
    stuck = session.open_channel()
    stuck.max_buffered = 1024 * 1024
    for _ in range(100):
        down._on_binary(session, p.encode_data(stuck.number, chunk))
        assert stuck.buffered <= stuck.max_buffered
    assert stuck.overflowed and "fell more than 1 MB behind" in stuck.ended.result()
    assert down.transfers_dropped == 1 and session.transfers_dropped == 1
    body = stuck.drain()
    assert len(body) <= stuck.max_buffered
    db.close()
