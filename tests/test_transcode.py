"""Transcoded variants: H.265/B-frames → H.264, the low variant, passthrough, dropping."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from fractions import Fraction
from typing import Any

import av
import pytest

from gateway.config import RelaySettings, Settings
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.media.annexb import split_annexb
from gateway.media.nal import nal_type
from gateway.streams.hub import Hub
from gateway.streams.manager import StreamManager
from gateway.streams.transcode import TranscodeSource
from tests.rtsp_support import RtspTestServer, make_clip, until


def decode_all(units: list[AccessUnit]) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for au in units:
        frames += ctx.decode(av.Packet(au.data))
    return frames + ctx.decode(None)


def nal_types(au: AccessUnit) -> list[int]:
    return [nal_type("h264", n) for n in split_annexb(au.data)]


@contextlib.asynccontextmanager
async def running(codec: str, **clip: Any):
    server = RtspTestServer(make_clip(codec, **clip))
    settings = Settings(streams={"linger_s": 0.3, "open_timeout_s": 3, "read_timeout_s": 3})
    mgr = StreamManager(settings, url_resolver=lambda cam, profile: server.url)
    await mgr.start()
    try:
        yield server, mgr
    finally:
        await mgr.stop()
        server.close()


async def collect(hub: Hub, n: int, timeout: float = 20) -> list[AccessUnit]:
    sub = hub.subscribe("test", maxsize=1000)
    got: list[AccessUnit] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {n} access units"
        got.append(await asyncio.wait_for(sub.get(), left))
    sub.close()
    return got


async def test_h265_source_becomes_h264_keyframes_decodable_by_pyav() -> None:
    async with running("hevc") as (server, mgr):
        lease = mgr.acquire("cam-h265", variant="h264", consumer="viewer")
        units = await collect(lease.hub, 40)
        info = lease.hub.info
        assert info is not None and info.codec == "h264" and not info.has_b_frames
        assert (info.width, info.height) == (640, 360)
        keys = [u for u in units if u.keyframe]
        assert units[0].keyframe and len(keys) >= 1
        for key in keys:
            assert nal_types(key)[:2] == [7, 8] and 5 in nal_types(key)
            frames = decode_all([key])  # each keyframe stands alone
            assert frames and (frames[0].width, frames[0].height) == (640, 360)
        frames = decode_all(units)
        assert len(frames) >= 38
        assert all(u.pts == u.dts for u in units)  # no B-frames
        # One base ingest (H.265), one transcoder, one RTSP session.
        keys_running = {row["key"] for row in mgr.stats()}
        assert keys_running == {"cam-h265/main", "cam-h265/main@h264"}
        assert server.sessions == 1
        lease.release()


async def test_low_variant_is_640x360_at_low_bitrate() -> None:
    async with running("h264", width=1280, height=720) as (_server, mgr):
        lease = mgr.acquire("cam-hd", variant="low")
        units = await collect(lease.hub, 60)
        frames = decode_all(units)
        assert {(f.width, f.height) for f in frames} == {(640, 360)}
        seconds = float((units[-1].pts - units[0].pts) * units[0].time_base)
        kbps = sum(len(u.data) for u in units) * 8 / seconds / 1000
        assert kbps < 500 * 2.0, f"{kbps:.0f} kbit/s"  # VBV at 500 kbit/s; allow start-up
        # ~1 s GOP: keyframes about a second apart in media time (frames the encoder
        # skipped when the box is busy stretch it, never shrink it).
        keys = [u for u in units if u.keyframe]
        assert len(keys) >= 2, [(u.epoch, u.keyframe) for u in units]
        gop_s = float((keys[1].pts - keys[0].pts) * keys[0].time_base)
        assert 0.9 <= gop_s <= 3.0, (gop_s, [(u.epoch, u.keyframe, u.pts) for u in units])
        lease.release()


async def test_b_frame_h264_source_is_transcoded_without_b_frames() -> None:
    async with running("h264", bframes=True) as (_server, mgr):
        lease = mgr.acquire("cam-b", variant="h264")
        units = await collect(lease.hub, 30)
        assert all(u.pts == u.dts for u in units)
        assert [u.pts for u in units] == sorted(u.pts for u in units)
        row = next(r for r in mgr.stats() if r["variant"] == "h264")
        assert row["source"]["mode"] == "transcode"
        lease.release()


async def test_h264_variant_of_a_browser_ready_source_is_forwarded_untouched() -> None:
    async with running("h264") as (_server, mgr):
        base = mgr.acquire("cam-ok")
        base_sub = base.hub.subscribe("cmp", maxsize=1000)
        lease = mgr.acquire("cam-ok", variant="h264")
        units = await collect(lease.hub, 20)
        sent = []
        while (au := base_sub.get_nowait()) is not None:
            sent.append(au.data)
        assert all(u.data in sent for u in units[:10])
        row = next(r for r in mgr.stats() if r["variant"] == "h264")
        assert row["source"]["mode"] == "passthrough"
        lease.release()
        base.release()


async def test_variant_stops_after_linger_and_releases_the_base_stream() -> None:
    async with running("hevc") as (server, mgr):
        lease = mgr.acquire("cam-h265", variant="h264")
        await collect(lease.hub, 5)
        lease.release()
        await until(lambda: mgr.stats() == [], 10, "variant and base to stop")
        await until(lambda: server.sessions == 0, 5, "the RTSP session to end")


async def test_encoder_behind_drops_frames_instead_of_queueing() -> None:
    clip = make_clip("h264", width=1280, height=720, frames=100)
    base = Hub("cam/main")
    base.set_info(StreamInfo("h264", 1280, 720, 25.0, gop=25))
    out = Hub("cam/main@low")
    src = TranscodeSource("cam/main@low", base, "low", RelaySettings())
    sub = out.subscribe("viewer", maxsize=1000)
    task = asyncio.create_task(src.run(out))
    await asyncio.sleep(0.2)
    tb = Fraction(1, 90000)
    # A burst far faster than real time: 4 s of video at once, twice.
    for rep in range(2):
        for data, pts, dts, key in clip.units:
            off = rep * clip.duration_90k
            base.publish(AccessUnit(data, pts + off, dts + off, tb, key, time.time(), 1))
    await until(lambda: src.frames_in + src.dropped >= 20, 20, "transcoder activity")
    await asyncio.sleep(2.0)
    published = 2 * len(clip.units)
    assert src.dropped > 0 or src.frames_in < published  # it did not encode everything
    assert src.frames_out < published, (src.frames_in, src.dropped, src.frames_out)
    got = []
    while (au := sub.get_nowait()) is not None:
        got.append(au)
    assert got and got[0].keyframe
    assert decode_all(got)  # what came out is a clean, decodable stream
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert src.state == "stopped"


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError):
        TranscodeSource("x", Hub("x"), "8k", RelaySettings())


@pytest.mark.parametrize("codec", ["hevc", "mjpeg"])
async def test_sim_camera_in_h265_or_mjpeg_gets_an_h264_variant(sim_factory, codec: str) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    sim = sim_factory("--base", base, "--size", "640x360", "--codec", codec, "--no-onvif")
    url = sim.cameras[0]["rtsp_main"]
    settings = Settings(streams={"linger_s": 0.3, "open_timeout_s": 3, "read_timeout_s": 3})
    mgr = StreamManager(settings, url_resolver=lambda cam, profile: url)
    await mgr.start()
    try:
        lease = mgr.acquire("sim-cam", variant="h264")
        units = await collect(lease.hub, 30)
        assert mgr.hub("sim-cam").info.codec == codec
        keys = [u for u in units if u.keyframe]
        assert keys and units[0].keyframe
        frames = decode_all([keys[0]])
        assert frames and (frames[0].width, frames[0].height) == (640, 360)
        assert len(decode_all(units)) >= 28
        lease.release()
    finally:
        await mgr.stop()
