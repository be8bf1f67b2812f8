"""The recorder part on real hubs fed with real H.264: continuous, gaps, events, linkage."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.recorder.recovery import probe
from gateway.recorder.service import Recorder
from gateway.store.db import Database
from gateway.streams.hub import Hub
from tests.recorder_media import HubFeeder, HubStreams


def make_gateway(tmp_path: Path, cameras: list[dict], **recording) -> SimpleNamespace:
    settings = parse_settings(
        {
            "data_dir": str(tmp_path),
            "cameras": cameras,
            "recording": {"segment_s": 2, **recording},
            "retention": {"max_usage_percent": 100, "min_free_mb": 0},
        }
    )
    db = Database(tmp_path / "gateway.db")
    return SimpleNamespace(
        settings=settings,
        data_dir=tmp_path,
        db=db,
        bus=EventBus(db),
        loop=None,
        path="gw",
        streams=HubStreams(),
    )


def make_recorder(gw: SimpleNamespace) -> Recorder:
    """The recorder on ``gw``'s hubs, its cameras from the config (no registry)."""
    return Recorder(gw, registry=None, streams=gw.streams)


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.1)


async def test_continuous_recording_with_a_dropout_leaves_one_explicit_gap(
    tmp_path: Path,
) -> None:
    gw = make_gateway(
        tmp_path, [{"id": "cam-01", "recording": {"mode": "continuous", "segment_s": 2}}]
    )
    hub = Hub("cam-01/main")
    gw.streams.hubs[("cam-01", "main")] = hub
    feeder = HubFeeder(hub).start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        await asyncio.sleep(5)
        feeder.pause(3)
        await asyncio.sleep(3 + 4)
    finally:
        await rec.stop()
        feeder.stop()
    segs = rec.index.segments("cam-01", 0, time.time() + 10)
    gaps = rec.index.gaps("cam-01", 0, time.time() + 10)
    assert len(gaps) == 1, gaps
    gap_len = gaps[0]["end"] - gaps[0]["start"]
    assert 2.7 < gap_len < 3.6, gap_len
    assert gaps[0]["reason"] in ("camera_offline", "discontinuity")
    assert all(s["status"] == "closed" for s in segs)
    # Segments of one run join exactly; the only hole is the gap.
    holes = [
        (a["end"], b["start"]) for a, b in itertools.pairwise(segs) if b["start"] - a["end"] > 0.05
    ]
    assert len(holes) == 1 and holes[0] == (
        pytest.approx(gaps[0]["start"]),
        pytest.approx(gaps[0]["end"]),
    )
    recorded = sum(s["duration"] for s in segs)
    wall = segs[-1]["end"] - segs[0]["start"] - gap_len
    assert recorded == pytest.approx(wall, rel=0.01)
    assert recorded > 7.5
    for seg in segs:
        info = probe(rec.index.abs(seg["path"]), decode=True)
        assert info.decoded == info.frames > 0
        assert info.duration == pytest.approx(seg["duration"], abs=0.05)
    assert all(s["duration"] <= 2.1 for s in segs)  # cut on keyframes at segment_s


async def test_event_mode_records_pre_and_post_roll_around_an_event(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path,
        [
            {
                "id": "cam-01",
                "recording": {"mode": "events", "segment_s": 10, "pre_s": 1, "post_s": 1},
            }
        ],
    )
    hub = Hub("cam-01/main")
    gw.streams.hubs[("cam-01", "main")] = hub
    feeder = HubFeeder(hub, gop=12).start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        await asyncio.sleep(3)
        assert rec.index.segments("cam-01", 0, time.time() + 10) == []  # nothing yet
        event = gw.bus.publish(Event(camera="cam-01", type="motion"))
        await asyncio.sleep(1.5)
        event.end = event.start.__class__.fromtimestamp(time.time(), event.start.tzinfo)
        gw.bus.publish(event)
        await wait_for(
            lambda: any(
                s["status"] == "closed" for s in rec.index.segments("cam-01", 0, time.time() + 10)
            )
        )
        await asyncio.sleep(1)
    finally:
        await rec.stop()
        feeder.stop()
    segs = rec.index.segments("cam-01", 0, time.time() + 10)
    assert len(segs) == 1
    seg = segs[0]
    start, end = event.start.timestamp(), event.end.timestamp()
    assert seg["has_event"] == 1 and seg["kind"] == "event"
    assert start - 1.6 < seg["start"] <= start - 0.9  # pre-roll from the GOP ring (GOP 0.48 s)
    assert end + 0.8 < seg["end"] < end + 1.8  # post-roll
    assert probe(rec.index.abs(seg["path"]), decode=True).decoded > 0
    assert rec.index.gaps("cam-01", 0, time.time() + 10) == []


async def test_record_for_records_a_camera_that_is_not_recorded_and_stops(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, [{"id": "cam-02"}])
    hub = Hub("cam-02/main")
    gw.streams.hubs[("cam-02", "main")] = hub
    feeder = HubFeeder(hub).start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        assert rec.workers == {}
        assert rec.record_for("cam-02", 2.0, "linkage test")
        await wait_for(lambda: "cam-02" not in rec.workers, timeout=15)
    finally:
        await rec.stop()
        feeder.stop()
    segs = rec.index.segments("cam-02", 0, time.time() + 10)
    assert segs and all(s["has_event"] == 1 and s["kind"] == "event" for s in segs)
    assert 1.9 < sum(s["duration"] for s in segs) < 3.2  # 2 s from the keyframe before now
    assert rec.record_for("", 5, "") is False


async def test_both_mode_flags_continuous_segments_around_an_event(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path,
        [{"id": "cam-01", "recording": {"mode": "both", "segment_s": 2, "pre_s": 0, "post_s": 0}}],
    )
    hub = Hub("cam-01/main")
    gw.streams.hubs[("cam-01", "main")] = hub
    feeder = HubFeeder(hub).start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        await asyncio.sleep(4.5)
        now = time.time()
        when = datetime.fromtimestamp(now - 0.5, UTC)
        gw.bus.publish(Event(camera="cam-01", type="motion", start=when, end=when))
        await asyncio.sleep(4.5)
    finally:
        await rec.stop()
        feeder.stop()
    segs = rec.index.segments("cam-01", 0, time.time() + 10)
    flagged = [s for s in segs if s["has_event"]]
    assert len(flagged) == 1 and flagged[0]["start"] <= now - 0.5 <= flagged[0]["end"]
    assert all(s["kind"] == "continuous" for s in segs)
    assert len(segs) >= 4


async def test_hevc_camera_is_recorded_as_hvc1_without_transcoding(tmp_path: Path) -> None:
    gw = make_gateway(
        tmp_path, [{"id": "cam-05", "recording": {"mode": "continuous", "segment_s": 2}}]
    )
    hub = Hub("cam-05/main")
    gw.streams.hubs[("cam-05", "main")] = hub
    feeder = HubFeeder(hub, codec="hevc").start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        await asyncio.sleep(5)
    finally:
        await rec.stop()
        feeder.stop()
    segs = rec.index.segments("cam-05", 0, time.time() + 10)
    assert len(segs) >= 2 and all(s["codec"] == "hevc" for s in segs)
    for seg in segs:
        path = rec.index.abs(seg["path"])
        assert b"hvc1" in path.read_bytes()[:4000]
        info = probe(path, decode=True)
        assert info.codec == "hevc" and info.decoded == info.frames > 0
