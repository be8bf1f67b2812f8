"""Event recording end to end: sim motion → motion event on the bus → a clip with pre/post-roll.

``gateway sim`` → ``gateway run`` (ingest, motion on the sub-stream, recorder in
``events`` mode on the main stream). Nothing is recorded while the scene is quiet;
motion gives one event segment from ``pre_s`` before the event (the GOP ring) to
``post_s`` after its end, which an operator can then lock.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.recorder.recovery import probe
from tests.recorder_media import random_base

pytestmark = pytest.mark.slow

MOTION = {
    "fps": 5,
    "start_after_s": 0.3,
    "end_after_s": 1.5,
    "cooldown_s": 1.0,
    "masks": [[[0, 0], [1, 0], [1, 0.1], [0, 0.1]]],  # the sim's barcode and ticker
}


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def listing(gw) -> dict:
    now = time.time()
    r = gw.client.get(
        "/api/v1/recordings",
        params={
            "camera": "cam-01",
            "start": datetime.fromtimestamp(now - 600, UTC).isoformat(),
            "end": datetime.fromtimestamp(now + 60, UTC).isoformat(),
        },
    )
    r.raise_for_status()
    return r.json()


def test_motion_event_is_recorded_with_pre_and_post_roll(sim_factory, gateway_factory) -> None:
    sim = sim_factory(
        "--base", random_base(), "--size", "640x360", "--sub-size", "320x180",
        "--gop", "25", "--no-onvif",
    )  # fmt: skip
    cam = sim.cameras[0]
    gw = gateway_factory(
        {
            "cameras": [
                {
                    "id": "cam-01",
                    "rtsp_url": cam["rtsp_main"],
                    "sub_rtsp_url": cam["rtsp_sub"],
                    "recording": {"mode": "events", "pre_s": 2, "post_s": 2, "segment_s": 30},
                }
            ],
            "motion": MOTION,
        }
    )
    time.sleep(8)  # the detector learns the scene; the recorder fills its GOP ring
    assert listing(gw)["segments"] == []  # quiet: nothing recorded
    sim.motion(cam["id"], True)
    time.sleep(3)
    sim.motion(cam["id"], False)
    deadline = time.monotonic() + 30
    while True:
        body = listing(gw)
        events = [e for e in body["events"] if e["type"] == "motion" and e["end"]]
        done = [s for s in body["segments"] if not s["recording"]]
        if events and done:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.5)
    event = events[0]
    seg = done[0]
    assert len(body["segments"]) == 1, body["segments"]
    assert seg["has_event"] and seg["kind"] == "event"
    start, end = ts(event["start"]), ts(event["end"])
    assert start - 3.2 < ts(seg["start"]) <= start - 1.9  # pre-roll from the ring (GOP 1 s)
    assert end + 1.5 < ts(seg["end"]) < end + 3.0  # post-roll
    r = gw.client.post("/api/v1/recordings/protect", json={"event_id": event["id"]})
    assert r.status_code == 200 and seg["id"] in r.json()["segments"]
    assert listing(gw)["segments"][0]["locked"] is True
    r = gw.client.get(f"/api/v1/recordings/cam-01/segments/{seg['id']}.mp4")
    assert r.status_code == 200
    path = Path(gw.data_dir) / "seg.mp4"
    path.write_bytes(r.content)
    info = probe(path, decode=True)
    assert info.decoded == info.frames and abs(info.duration - seg["duration"]) < 0.1
    clip = gw.client.get(
        "/api/v1/recordings/cam-01/clip.mp4", params={"event": event["id"], "download": 1}
    )
    assert clip.status_code == 200 and len(clip.content) > 10_000
