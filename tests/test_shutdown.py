"""Graceful shutdown: SIGTERM closes the open recording cleanly and tells the parent.

Real processes on loopback: a simulated camera, a recording village gateway and
its town parent. The village is stopped with SIGTERM in the middle of a long
segment: the segment's index row must be closed with an end at the moment of the
stop, and its file must decode to that end. The town must mark the village
offline at once, long before its heartbeat timeout would have.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from gateway.recorder.index import RecordingIndex
from gateway.recorder.recovery import probe
from gateway.store.db import Database
from tests.cascade_support import all_cameras, child_stats, issue_token_api, wait_for
from tests.support import small_sim_args

BASE = "127.0.164.1"
OFFLINE_AFTER_S = 30.0  # the heartbeat timeout the prompt notice must beat by far


@pytest.fixture
def camera(sim_factory) -> dict[str, Any]:
    sim = sim_factory(*small_sim_args(BASE, fps=15, gop=15))
    return sim.cameras[0]


@pytest.mark.timeout(180)
def test_sigterm_closes_the_open_segment_and_tells_the_parent(
    camera: dict[str, Any], gateway_factory
) -> None:
    town = gateway_factory(
        {
            "discovery": {"interval_s": 0},
            "cascade": {
                "level": "town",
                "id": "town-a",
                "heartbeat_s": 1.0,
                "offline_after_s": OFFLINE_AFTER_S,
            },
        },
        name="town",
    )
    village = gateway_factory(
        {
            "cameras": [
                {
                    "id": "cam-01",
                    "rtsp_url": camera["rtsp_main"],
                    # Long segments: the stop lands in the middle of one.
                    "recording": {"mode": "continuous", "segment_s": 300},
                }
            ],
            "motion": {"enabled": False},
            "discovery": {"interval_s": 0},
            "retention": {"max_usage_percent": 99, "min_free_mb": 0},
            "cascade": {
                "level": "village",
                "id": "village-1",
                "heartbeat_s": 1.0,
                "offline_after_s": OFFLINE_AFTER_S,
                "parent": {"url": town.base_url, "token": issue_token_api(town, "village-1")},
            },
        },
        name="village",
    )
    wait_for(lambda: child_stats(town, "village-1").get("online"), 30, "village online at town")

    def recording() -> bool:
        status = village.client.get("/api/v1/recordings/status").json()
        cams = status.get("cameras") or []
        return bool(cams) and cams[0].get("state") == "recording"

    wait_for(recording, 30, "the village recording")
    time.sleep(6)  # a few seconds into the segment

    stop_sent = time.time()
    code = village.stop(signal.SIGTERM, timeout=30)
    stopped_in = time.time() - stop_sent
    # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop too.
    assert code in (0, -signal.SIGTERM), (code, village.tail())
    assert stopped_in < 15, f"shutdown took {stopped_in:.1f}s"

    # The parent heard it at once, not after its heartbeat timeout.
    noticed = wait_for(
        lambda: not child_stats(town, "village-1").get("online"),
        OFFLINE_AFTER_S / 3,
        "town marking village-1 offline after its SIGTERM",
    )
    assert noticed
    offline_after = time.time() - stop_sent
    assert offline_after < OFFLINE_AFTER_S / 3, offline_after
    tree = all_cameras(town.client.get("/api/v1/tree").json())
    assert tree.get("village-1/cam-01", {}).get("status") in (None, "offline", "unknown"), tree

    # The segment that was open is closed, with an end at the stop, and decodes to it.
    db = Database(village.data_dir / "gateway.db")
    index = RecordingIndex(db, village.data_dir / "recordings")
    segs = index.segments("cam-01", 0, time.time() + 60)
    assert segs, "no segment recorded"
    assert all(s["status"] == "closed" for s in segs), segs
    last = segs[-1]
    assert abs(last["end"] - stop_sent) < 2.5, (last, stop_sent)
    assert last["duration"] > 4, last
    info = probe(index.abs(last["path"]), decode=True)
    assert info.frames > 0 and info.decoded == info.frames, info
    assert abs(info.duration - last["duration"]) < 0.2, (info, last)

    log = village.log_path.read_text("utf-8", "replace")
    assert "Traceback" not in log, log[-4000:]
    print(f"shutdown {stopped_in:.2f}s, parent noticed after {offline_after:.2f}s")
