"""RTSP ingest: assembly, parameter sets, reconnects, watchdog, faults, leaks.

The camera is ``tests.rtsp_support.RtspTestServer`` (real RTSP over real loopback
sockets, FFmpeg's client on our side) with the simulator's fault modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import resource
import threading
import time

import av
import pytest

from gateway.config import StreamSettings
from gateway.media.access_unit import AccessUnit
from gateway.media.annexb import avcc_to_annexb, join_annexb, split_annexb
from gateway.media.assembler import AccessUnitAssembler
from gateway.media.nal import nal_type
from gateway.media.params import extradata_parameter_sets
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource
from tests.rtsp_support import RtspTestServer, make_clip, until

SPS = b"\x67\x64\x00\x1e\xac"
PPS = b"\x68\xef\x3c\xb0"
IDR = b"\x65\x88\x84\x21"
SLICE = b"\x41\x9a\x21"
SEI = b"\x06\x05\x01"


def fast(**kw: float) -> StreamSettings:
    base = {"open_timeout_s": 3, "read_timeout_s": 3, "stall_timeout_s": 2, "linger_s": 0.5}
    return StreamSettings(**{**base, **kw})


class Ingest:
    """A running RtspSource with a subscriber that records what arrives."""

    def __init__(self, url: str, settings: StreamSettings) -> None:
        self.hub = Hub("cam/main")
        self.statuses: list[tuple[float, str, str]] = []
        self.source = RtspSource("cam", "main", url, settings, on_status=self._status)
        self.units: list[AccessUnit] = []
        self._sub = self.hub.subscribe("test", maxsize=10000)
        self._task: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    def _status(self, status: str, reason: str) -> None:
        self.statuses.append((time.monotonic(), status, reason))

    async def __aenter__(self) -> Ingest:
        self._task = asyncio.create_task(self.source.run(self.hub))
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self.units.append(await self._sub.get())

    async def __aexit__(self, *exc: object) -> None:
        for task in (self._task, self._reader):
            assert task is not None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def epoch_units(self, epoch: int) -> list[AccessUnit]:
        return [u for u in self.units if u.epoch == epoch]


# -- units: assembly and parameter sets ---------------------------------------------------
def test_access_unit_assembly_merges_a_picture_split_into_slices() -> None:
    asm = AccessUnitAssembler("h264")
    out = asm.push(join_annexb([SPS, PPS]), 0, 0, False)
    assert out == []  # parameter sets wait for their picture
    out = asm.push(join_annexb([IDR]), 0, 0, True)
    assert len(out) == 1 and out[0].keyframe  # direct mode: no added latency
    assert [nal_type("h264", n) for n in split_annexb(out[0].data)] == [7, 8, 5]
    # The second slice of picture 3600 reveals the camera splits pictures.
    assert len(asm.push(join_annexb([SLICE]), 3600, 3600, False)) == 1
    assert asm.push(join_annexb([SLICE]), 3600, 3600, False) == []
    assert asm.merge and asm.split_dropped == 1
    # From now on pieces sharing a timestamp become one unit.
    assert asm.push(join_annexb([SLICE]), 7200, 7200, False) == []
    assert asm.push(join_annexb([SLICE + b"\x01"]), 7200, 7200, False) == []
    out = asm.push(join_annexb([SLICE]), 10800, 10800, False)
    assert len(out) == 1 and out[0].pts == 7200
    assert split_annexb(out[0].data) == [SLICE, SLICE + b"\x01"]
    assert [u.pts for u in asm.flush()] == [10800]


def test_merge_mode_learned_keeps_keyframe_flag_of_any_piece() -> None:
    asm = AccessUnitAssembler("h264", merge=True)
    asm.push(join_annexb([SEI]), 0, 0, False)
    asm.push(join_annexb([IDR]), 0, 0, True)
    (unit,) = asm.push(join_annexb([SLICE]), 3600, 3600, False)
    assert unit.keyframe and nal_type("h264", split_annexb(unit.data)[-1]) == 5


def test_sps_pps_from_extradata_before_every_keyframe_that_lacks_them() -> None:
    avcc = bytes([1, 0x64, 0, 0x1E, 0xFF, 0xE1, 0, len(SPS)]) + SPS + bytes([1, 0, len(PPS)]) + PPS
    for extradata in (avcc, join_annexb([SPS, PPS])):
        asm = AccessUnitAssembler("h264", extradata)
        key = asm.push(join_annexb([IDR]), 0, 0, True)[0]
        assert split_annexb(key.data) == [SPS, PPS, IDR]
        p = asm.push(join_annexb([SLICE]), 3600, 3600, False)[0]
        assert split_annexb(p.data) == [SLICE]  # not before other pictures
        key2 = asm.push(join_annexb([IDR]), 7200, 7200, True)[0]
        assert split_annexb(key2.data) == [SPS, PPS, IDR]


def test_in_band_parameter_sets_replace_extradata_ones() -> None:
    new_sps = SPS + b"\x99"
    asm = AccessUnitAssembler("h264", join_annexb([SPS, PPS]))
    asm.push(join_annexb([new_sps, PPS, IDR]), 0, 0, True)
    key = asm.push(join_annexb([IDR]), 3600, 3600, True)[0]
    assert split_annexb(key.data)[0] == new_sps


def test_avcc_packets_become_annex_b() -> None:
    avcc = b"".join(len(n).to_bytes(4, "big") + n for n in (SPS, PPS, IDR))
    assert split_annexb(avcc_to_annexb(avcc)) == [SPS, PPS, IDR]
    asm = AccessUnitAssembler("h264")
    (unit,) = asm.push(avcc, 0, 0, True)
    assert unit.data.startswith(b"\x00\x00\x00\x01") and asm.converted == 1
    with pytest.raises(ValueError):
        avcc_to_annexb(b"\x00\x00\x00\x09abc")


def test_hevc_parameter_sets_from_extradata() -> None:
    vps, sps, pps = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc0"
    idr = b"\x26\x01\xaf"  # IDR_W_RADL
    asm = AccessUnitAssembler("hevc", join_annexb([vps, sps, pps]))
    (unit,) = asm.push(join_annexb([idr]), 0, 0, False)
    assert unit.keyframe  # recognised from the NAL type
    assert split_annexb(unit.data) == [vps, sps, pps, idr]
    assert len(extradata_parameter_sets("hevc", join_annexb([vps, sps, pps, idr]))) == 3


# -- against a real RTSP server -----------------------------------------------------------------
async def test_ingest_publishes_whole_keyframe_first_units_with_stream_info() -> None:
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast()) as ing:
            await until(lambda: len(ing.units) >= 40, 15, "40 access units")
            info = ing.hub.info
            assert info is not None and info.codec == "h264"
            assert (info.width, info.height, info.fps) == (640, 360, 25.0)
            assert info.profile == "High" and not info.has_b_frames and info.passthrough_ok
            assert ing.units[0].keyframe
            await until(lambda: ing.hub.info.gop is not None, 5, "GOP measured")
            assert ing.hub.info.gop == 25
            dts = [u.dts for u in ing.units]
            assert all(b > a for a, b in itertools.pairwise(dts))
            assert server.sessions == 1
            assert ing.statuses[0][1] == "online"
    finally:
        server.close()


async def test_sps_pps_put_before_keyframes_when_the_camera_sends_them_in_sdp_only() -> None:
    server = RtspTestServer(make_clip("h264"), strip_params=True)
    try:
        async with Ingest(server.url, fast()) as ing:
            await until(lambda: sum(u.keyframe for u in ing.units) >= 2, 15, "two keyframes")
            keys = [u for u in ing.units if u.keyframe]
            for key in keys:
                types = [nal_type("h264", n) for n in split_annexb(key.data)]
                assert types[:2] == [7, 8] and 5 in types
            # Each keyframe decodes on its own, with a fresh decoder.
            for key in keys[:2]:
                ctx = av.CodecContext.create("h264", "r")
                frames = ctx.decode(av.Packet(key.data)) + ctx.decode(None)
                assert frames and frames[0].width == 640
            deltas = [u for u in ing.units if not u.keyframe]
            assert all(7 not in [nal_type("h264", n) for n in split_annexb(u.data)] for u in deltas)
    finally:
        server.close()


async def test_b_frame_source_is_flagged_not_passthrough() -> None:
    server = RtspTestServer(make_clip("h264", bframes=True))
    try:
        async with Ingest(server.url, fast()) as ing:
            await until(lambda: len(ing.units) >= 30, 15, "30 access units")
            assert ing.hub.info.has_b_frames and not ing.hub.info.passthrough_ok
    finally:
        server.close()


async def test_udp_transport_works_too() -> None:
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast(transport="udp")) as ing:
            await until(lambda: len(ing.units) >= 25, 15, "25 access units over UDP")
            assert ing.units[0].keyframe
    finally:
        server.close()


async def test_reconnects_after_offline_then_online_first_retry_within_half_a_second() -> None:
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast()) as ing:
            await until(lambda: len(ing.units) >= 10, 15, "first units")
            server.fault("offline")
            await until(lambda: ing.statuses[-1][1] == "offline", 10, "offline reported")
            t_off = ing.statuses[-1][0]
            # A retry is a new session attempt; the first comes within backoff_initial_s.
            await until(lambda: ing.source.sessions >= 2, 2, "first retry")
            assert time.monotonic() - t_off <= 0.6
            server.fault("online")
            took = await until(lambda: ing.epoch_units(ing.source.epoch), 10, "units again")
            assert took < 5.0
            new = ing.epoch_units(ing.source.epoch)
            assert new[0].keyframe and ing.source.epoch >= 2
            assert ing.statuses[-1][1] == "online" and ing.source.reconnects >= 1
            assert server.sessions == 1
    finally:
        server.close()


async def test_long_outage_resumes_within_seconds_of_return_despite_a_long_backoff() -> None:
    # Backoff grown to 30 s: without the port probe the return would wait up to 30 s.
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast(backoff_max_s=30, backoff_initial_s=4)) as ing:
            await until(lambda: len(ing.units) >= 5, 15, "first units")
            server.fault("offline")
            await until(lambda: ing.source.sessions >= 2, 10, "a failed retry")
            attempts = ing.source.sessions
            await asyncio.sleep(2.0)  # well inside the 4-8 s backoff now running
            # Probing the port costs no RTSP session attempts while the camera is down.
            assert ing.source.sessions == attempts
            server.fault("online")
            t_back = time.monotonic()
            await until(lambda: ing.epoch_units(ing.source.epoch), 10, "units again")
            assert time.monotonic() - t_back < 3.0
    finally:
        server.close()


async def test_camera_absent_at_start_up_is_picked_up_when_it_appears() -> None:
    server = RtspTestServer(make_clip("h264"))
    server.fault("offline")
    try:
        async with Ingest(server.url, fast(backoff_max_s=1)) as ing:
            await until(lambda: ing.source.sessions >= 2, 5, "retries")
            assert ing.statuses and ing.statuses[-1][1] == "offline"
            assert "refused" in ing.source.last_error.lower()
            server.fault("online")
            await until(lambda: len(ing.units) >= 5, 10, "units after the camera appeared")
            assert ing.units[0].keyframe
    finally:
        server.close()


async def test_watchdog_catches_a_stall_that_ffmpeg_timeout_would_miss_for_long() -> None:
    server = RtspTestServer(make_clip("h264"))
    # FFmpeg's read timeout is far away: only the watchdog can act within seconds.
    settings = fast(stall_timeout_s=1.0, read_timeout_s=30, open_timeout_s=5)
    try:
        async with Ingest(server.url, settings) as ing:
            await until(lambda: len(ing.units) >= 10, 15, "first units")
            server.fault("stall")
            t0 = time.monotonic()
            await until(lambda: ing.source.stalls >= 1, 5, "the watchdog")
            assert time.monotonic() - t0 < 3.5
            await until(lambda: ing.source.sessions >= 2, 5, "a new session")
            assert "watchdog" in ing.source.last_error
            server.fault("online")
            await until(lambda: ing.epoch_units(ing.source.epoch), 10, "units after the stall")
            assert ing.source.abandoned == 0  # the socket shutdown unstuck FFmpeg
    finally:
        server.close()


async def test_garbage_on_the_wire_is_survived() -> None:
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast(stall_timeout_s=1.5)) as ing:
            await until(lambda: len(ing.units) >= 10, 15, "first units")
            server.fault("garbage")
            await asyncio.sleep(2.5)
            server.fault("online")
            before = len(ing.units)
            await until(lambda: len(ing.units) >= before + 25, 15, "clean units again")
            assert ing._task is not None and not ing._task.done()
            latest = ing.epoch_units(ing.source.epoch)
            assert latest and latest[0].keyframe
    finally:
        server.close()


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
async def test_twenty_offline_online_cycles_leak_no_threads_fds_or_memory() -> None:
    server = RtspTestServer(make_clip("h264"))
    try:
        async with Ingest(server.url, fast(backoff_initial_s=0.2)) as ing:

            async def cycle() -> None:
                epoch = ing.source.epoch
                server.fault("offline")
                await until(lambda: ing.statuses[-1][1] == "offline", 10, "offline")
                server.fault("online")
                await until(
                    lambda: ing.source.epoch > epoch and ing.epoch_units(ing.source.epoch),
                    10,
                    "units after coming back",
                )

            await until(lambda: len(ing.units) >= 5, 15, "first units")
            for _ in range(3):  # warm up allocator and FFmpeg's one-time state
                await cycle()
            ing.units.clear()
            await asyncio.sleep(0.3)
            threads, fds, rss = threading.active_count(), _fds(), _rss_kb()
            for _ in range(20):
                await cycle()
                ing.units.clear()
            await asyncio.sleep(0.5)
            assert threading.active_count() <= threads + 1
            assert _fds() <= fds + 2
            assert _rss_kb() - rss < 30_000, f"RSS grew {_rss_kb() - rss} kB"
            assert ing.source.reconnects >= 23
    finally:
        server.close()
