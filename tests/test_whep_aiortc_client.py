"""A WHEP client that is not our page (aiortc, in the test) plays from the relay.

In-process: a real Hub fed by a libx264 encoder thread (with the sim's barcode in
the pixels), the relay and its HTTP router, and an aiortc client; media flows over
real UDP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.relay_helpers import WhepClient, whep_rig

CAM = "cam-01"
URL = f"/api/v1/streams/{CAM}/whep"


# Every test runs twice: viewers sent by the gateway's own process, and by two relay
# worker processes (relay.workers, gateway.relay.pool) fed from the same hub.
@pytest.fixture(params=[0, 2], ids=["in-process", "workers"])
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    relay = {
        "interfaces": ["127.0.0.1"],
        "session_timeout_s": 2,
        "source_wait_s": 2,
        "workers": request.param,
    }
    async with whep_rig(tmp_path / "data", relay, camera=CAM, index=7) as rig:
        yield rig


def _video_codec(answer: str) -> str:
    """The first (chosen) codec of the answer's video m-line."""
    lines = answer.splitlines()
    mline = next(ln for ln in lines if ln.startswith("m=video"))
    pt = mline.split()[3]
    rtpmap = next(ln for ln in lines if ln.startswith(f"a=rtpmap:{pt} "))
    return rtpmap.split()[1]


async def test_aiortc_client_receives_the_cameras_h264(rig: dict[str, Any]) -> None:
    client = rig["client"]()
    r = await client.start()
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("application/sdp")
    assert r.headers["location"].startswith(f"{URL}/")
    assert _video_codec(client.answer).upper().startswith("H264/90000")
    # The source is High profile and the viewer offered no High entry: Constrained
    # Baseline is answered anyway, and the viewer still decodes.
    assert "a=candidate:" in client.answer and "127.0.0.1" in client.answer
    assert await client.wait_frames(40, timeout=15), client.received
    rec = client.received
    assert rec.sizes == {(640, 360)}
    assert rec.indexes == {7}, "the picture must be this camera's (barcode index 7)"
    assert statistics.median(rec.latencies_ms) < 500, rec.latencies_ms[-10:]
    relay = rig["gw"].relay
    session = next(iter(relay.sessions.values()))
    for _ in range(30):  # a worker reports its figures once a second
        if relay.peers.stats(session.id).units_sent >= 40:
            break
        await asyncio.sleep(0.1)
    assert relay.peers.stats(session.id).units_sent >= 40, relay.peers.stats(session.id)
    assert rig["streams"].leases == 1


async def test_second_viewer_joining_late_gets_a_frame_within_a_second(
    rig: dict[str, Any],
) -> None:
    first = rig["client"]()
    assert (await first.start()).status_code == 201
    assert await first.wait_frames(20, timeout=15)
    await asyncio.sleep(0.5)  # join mid-GOP: the relay must start from the cached keyframe
    second = rig["client"]()
    assert (await second.start()).status_code == 201
    assert await second.wait_frames(1, timeout=5)
    ttff = second.received.first_at - second.started_at
    assert ttff <= 1.0, f"time to first frame {ttff:.2f} s"
    # And it keeps playing in step with the camera, not a GOP behind.
    await second.wait_frames(second.received.frames + 25, timeout=5)
    recent = second.received.latencies_ms[-10:]
    assert statistics.median(recent) < 500, recent


async def test_camera_outage_resumes_in_the_same_session(rig: dict[str, Any]) -> None:
    client = rig["client"]()
    assert (await client.start()).status_code == 201
    assert await client.wait_frames(20, timeout=15)
    rig["camera"].go_offline()
    await asyncio.sleep(2.5)
    during = client.received.frames
    rig["camera"].go_online()
    back = time.monotonic()
    assert await client.wait_frames(during + 20, timeout=10), "no frames after the camera came back"
    assert time.monotonic() - back < 5
    assert len(rig["gw"].relay.sessions) == 1, "the session must survive the outage"
    assert statistics.median(client.received.latencies_ms[-10:]) < 500


async def test_stream_end_closes_the_session_and_releases_the_lease(rig: dict[str, Any]) -> None:
    client = rig["client"]()
    assert (await client.start()).status_code == 201
    assert await client.wait_frames(5, timeout=15)
    rig["hub"].close()
    relay = rig["gw"].relay
    for _ in range(50):
        if not relay.sessions:
            break
        await asyncio.sleep(0.1)
    assert not relay.sessions
    assert relay.closed["stream ended"] == 1
    assert rig["streams"].leases == 0


async def test_viewer_that_never_connects_is_torn_down(rig: dict[str, Any]) -> None:
    client = rig["client"]()
    r = await client.start()
    assert r.status_code == 201
    relay = rig["gw"].relay
    # Forget the answer: ICE never completes on our side.
    await client.pc.close()
    for _ in range(60):
        if not relay.sessions:
            break
        await asyncio.sleep(0.1)
    assert not relay.sessions
    assert sum(relay.closed.values()) == 1
    assert rig["streams"].leases == 0


async def test_delete_ends_the_session(rig: dict[str, Any]) -> None:
    client = rig["client"]()
    assert (await client.start()).status_code == 201
    assert await client.wait_frames(3, timeout=15)
    r = await client.http.delete(client.location)
    assert r.status_code == 200
    assert not rig["gw"].relay.sessions
    assert rig["streams"].leases == 0
    assert (await client.http.delete(client.location)).status_code == 404


# -- against real processes: gateway run + gateway sim --------------------------------------
VIEWER_SCRIPT = """
import asyncio, sys, httpx
from tests.relay_helpers import WhepClient

async def main():
    auth = {"Authorization": "Bearer " + sys.argv[2]}
    http = httpx.AsyncClient(base_url=sys.argv[1], headers=auth)
    c = WhepClient(http, "/api/v1/streams/cam-01/whep")
    r = await c.start()
    assert r.status_code == 201, r.text
    await c.wait_frames(10, timeout=15)
    print("playing", c.received.frames, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_aiortc_client_plays_from_the_simulator_and_a_killed_viewer_is_torn_down(
    sim_factory: Any, gateway_factory: Any
) -> None:
    import os
    import signal
    import subprocess
    import sys

    sim = sim_factory("--cameras", "1", "--base", "127.0.44.1", "--size", "960x540")
    cam = sim.cameras[0]
    gw = gateway_factory(
        {
            "cameras": [{"id": CAM, "rtsp_url": cam["rtsp_main"]}],
            "relay": {"interfaces": ["127.0.0.1"], "session_timeout_s": 3},
            "motion": {"enabled": False},
        }
    )

    async def play(url: str) -> WhepClient:
        async with httpx.AsyncClient(
            base_url=gw.base_url, headers={"Authorization": f"Bearer {gw.token}"}
        ) as http:
            client = WhepClient(http, url)
            r = await client.start()
            assert r.status_code == 201, r.text
            await client.wait_frames(30, timeout=20)
            await client.stop()
            return client

    client = asyncio.run(play(URL))
    assert client.received.frames >= 30
    assert client.received.indexes == {cam["index"]}
    assert client.received.sizes == {(960, 540)}
    # The low-bitrate variant: the shared 640×360 transcode, same camera.
    low = asyncio.run(play(URL + "?variant=low"))
    assert low.received.frames >= 30
    assert low.received.sizes == {(640, 360)}
    assert low.received.indexes == {cam["index"]}

    viewer = subprocess.Popen(
        [sys.executable, "-c", VIEWER_SCRIPT, gw.base_url, gw.token or ""],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert viewer.stdout is not None
        assert viewer.stdout.readline().startswith("playing")
        status = gw.client.get("/api/v1/relay/sessions").json()
        assert len(status["sessions"]) == 1
        # RTCP flows, and the relay has seen it: it then knows this viewer sends reports
        seen = time.monotonic()
        while time.monotonic() - seen < 30:
            status = gw.client.get("/api/v1/relay/sessions").json()
            if status["sessions"] and status["sessions"][0].get("viewer_reports"):
                break
            time.sleep(0.25)
        assert status["sessions"][0]["viewer_reports"], status
        os.killpg(viewer.pid, signal.SIGKILL)  # gone without DELETE or DTLS close
        killed = time.monotonic()
        while time.monotonic() - killed < 15:
            status = gw.client.get("/api/v1/relay/sessions").json()
            if not status["sessions"]:
                break
            time.sleep(0.25)
        gone_after = time.monotonic() - killed
        assert not status["sessions"], "the vanished viewer's session is still there"
        assert status["closed"].get("consent timeout") == 1, status["closed"]
        # session_timeout_s (3) after the viewer's last RTCP, checked once a second.
        assert gone_after <= 3 + 4, gone_after
    finally:
        if viewer.poll() is None:
            os.killpg(viewer.pid, signal.SIGKILL)
        viewer.wait(5)


def _resources() -> dict[str, int]:
    import os
    import threading

    rss_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "tasks": len(asyncio.all_tasks()),
        "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") // 2**20,
    }


async def test_twenty_sessions_and_outages_leave_nothing_behind(rig: dict[str, Any]) -> None:
    relay = rig["gw"].relay

    async def cycle() -> None:
        client = rig["client"]()
        assert (await client.start()).status_code == 201
        assert await client.wait_frames(3, timeout=10)
        rig["camera"].go_offline()
        await asyncio.sleep(0.3)
        rig["camera"].go_online()
        assert await client.wait_frames(client.received.frames + 3, timeout=10)
        await client.stop()
        for _ in range(50):
            if not relay.sessions:
                break
            await asyncio.sleep(0.05)

    for _ in range(3):  # warm up: codecs, thread pools, caches
        await cycle()
    await asyncio.sleep(0.5)
    before = _resources()
    for _ in range(20):
        await cycle()
    await asyncio.sleep(1.0)
    after = _resources()
    assert not relay.sessions
    assert rig["streams"].leases == 0
    assert after["fds"] <= before["fds"] + 2, (before, after)
    assert after["threads"] <= before["threads"] + 1, (before, after)
    assert after["tasks"] <= before["tasks"] + 2, (before, after)
    assert after["rss_mb"] <= before["rss_mb"] + 40, (before, after)
