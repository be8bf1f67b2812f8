"""Recorder acceptance with real processes: ``gateway sim`` → ``gateway run`` → files.

Short on purpose (CI time): ~70 s of recording with 10 s segments proves the duration
and gap figures; the longer run of a few minutes is in docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest

from gateway.recorder.index import RecordingIndex
from gateway.recorder.playback import build_clip
from gateway.recorder.recovery import probe
from gateway.sim import barcode
from gateway.store.db import Database
from tests.recorder_media import random_base
from tests.support import GatewayProcess

pytestmark = pytest.mark.slow
# Seconds recorded before and after the drop-out; the by-hand run of several minutes
# (docs/benchmarks.md) sets RECORDER_ACCEPT_S=120.
HALF_S = float(os.environ.get("RECORDER_ACCEPT_S", "25"))


def gateway_config(rtsp: str, **recording) -> dict:
    return {
        "cameras": [
            {
                "id": "cam-01",
                "rtsp_url": rtsp,
                "recording": {"mode": "continuous", "segment_s": 10, **recording},
            }
        ],
        "streams": {"backoff_initial_s": 0.3, "backoff_max_s": 1.0, "stall_timeout_s": 3},
        "retention": {"max_usage_percent": 99, "min_free_mb": 0, "check_interval_s": 1},
        "motion": {"enabled": False},
    }


def wait_until(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(what)


def listing(gw: GatewayProcess) -> dict:
    now = time.time()
    r = gw.client.get(
        "/api/v1/recordings",
        params={"camera": "cam-01", "start": _iso(now - 86400), "end": _iso(now + 86400)},
    )
    r.raise_for_status()
    return r.json()


def index_of(data_dir: Path) -> tuple[Database, RecordingIndex]:
    db = Database(data_dir / "gateway.db")
    return db, RecordingIndex(db, data_dir / "recordings")


def test_continuous_recording_matches_wall_clock_and_a_dropout_is_one_gap(
    tmp_path: Path, sim_factory, gateway_factory
) -> None:
    sim = sim_factory("--cameras", "1", "--base", random_base(), "--size", "640x360", "--gop", "25")
    cam = sim.cameras[0]
    gw = gateway_factory(gateway_config(cam["rtsp_main"]))
    wait_until(lambda: listing(gw)["segments"], 30, "no segment started")
    time.sleep(HALF_S)
    sim.fault(cam["id"], "offline")
    time.sleep(10)
    sim.fault(cam["id"], "online")
    time.sleep(HALF_S)
    status = gw.client.get("/api/v1/recordings/status").json()
    assert status["cameras"][0]["state"] == "recording", status
    stop_sent = time.time()
    # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop here.
    assert gw.stop(signal.SIGTERM, timeout=30) in (0, -signal.SIGTERM)

    db, index = index_of(gw.data_dir)
    segs = index.segments("cam-01", 0, time.time() + 60)
    gaps = index.gaps("cam-01", 0, time.time() + 60)
    assert len(gaps) == 1, gaps
    gap = gaps[0]["end"] - gaps[0]["start"]
    assert 9.0 < gap < 13.5, gap
    assert all(s["status"] == "closed" for s in segs), segs
    assert len(segs) >= 6
    recorded = sum(s["duration"] for s in segs)
    span = segs[-1]["end"] - segs[0]["start"]
    # Within 1 %: what the files hold against the wall-clock span they cover, minus the gap.
    assert abs(recorded - (span - gap)) < 0.01 * (span - gap), (recorded, span, gap)
    # And against the test's own clock: the recording reached the moment we stopped it.
    assert abs(segs[-1]["end"] - stop_sent) < 2.0
    # Nothing else missing: consecutive segments join except across the one gap. (A
    # loaded simulator sometimes skips a few frames; such a hole shows at a segment
    # boundary as a fraction of a second, which the 1 % budget above already covers.)
    holes = [b["start"] - a["end"] for a, b in itertools.pairwise(segs)]
    big = [h for h in holes if h > 0.5]
    assert len(big) == 1 and abs(big[0] - gap) < 0.1, holes
    assert sum(h for h in holes if 0 < h <= 0.5) < 0.005 * span, holes
    for seg in segs:
        info = probe(index.abs(seg["path"]), decode=True)
        assert info.frames > 0 and info.decoded == info.frames, seg
        assert abs(info.duration - seg["duration"]) < 0.1
        assert seg["duration"] <= 10.0 + 1.05  # cut at the first keyframe after 10 s
    # Independent of our clocks: the sim burns its wall-clock time into every frame. The
    # index's start and end of every segment sit at the first and last frame's barcode
    # plus the same transport delay (tens of ms), within 0.15 s.
    offsets = []
    for seg in segs:
        shown = clip_barcodes(index.abs(seg["path"]))
        offsets += [seg["start"] - shown[0], seg["end"] - 0.04 - shown[-1]]
    assert max(offsets) - min(offsets) < 0.15 and 0 <= min(offsets) < 0.5, offsets
    # A clip is exactly the requested range (from the keyframe at or before start): the
    # barcode in the sim's pixels says when each frame was made.
    a = segs[1]["start"] + 3.3
    b = a + 12.0  # across a segment boundary
    clip = build_clip(index, "cam-01", a, b, tmp_path / "clip.mp4")
    shown = clip_barcodes(clip.path)
    assert clip.start <= a and clip.frames == len(shown)
    assert a - 1.3 < shown[0] <= a + 0.1, (shown[0], a)  # GOP is 1 s
    assert b - 0.3 < shown[-1] < b + 0.1, (shown[-1], b)
    # Every recorded frame of the range is in the clip (the sim may skip frames when the
    # machine is loaded, so count against the segments, not against 25 fps).
    assert len(shown) == recorded_frames(index, clip.start - 0.001, b)
    db.close()


def recorded_frames(index: RecordingIndex, start: float, end: float) -> int:
    count = 0
    for seg in index.segments("cam-01", start, end):
        with av.open(str(index.abs(seg["path"]))) as c:
            stream = c.streams.video[0]
            tb = float(stream.time_base)
            dts = [p.dts for p in c.demux(stream) if p.dts is not None]
        walls = [seg["start"] + (d - dts[0]) * tb for d in dts]
        count += sum(start <= w < end for w in walls)
    return count


def clip_barcodes(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [barcode.decode(f.to_ndarray(format="gray"))[0] / 1000.0 for f in c.decode(video=0)]


def test_kill_9_mid_segment_leaves_an_indexed_playable_partial_segment(
    tmp_path: Path, sim_factory
) -> None:
    sim = sim_factory("--cameras", "1", "--base", random_base(), "--size", "640x360", "--gop", "25")
    config = gateway_config(sim.cameras[0]["rtsp_main"], segment_s=60)
    gw = GatewayProcess(tmp_path, config, name="gw")
    try:
        first = wait_until(lambda: listing(gw)["segments"], 30, "no segment started")[0]
        time.sleep(8)
    finally:
        gw.stop(signal.SIGKILL)
    seg_file = None
    db, index = index_of(gw.data_dir)
    row = index.get(first["id"])
    assert row["status"] == "open"  # killed while writing it
    seg_file = index.abs(row["path"])
    killed_size = seg_file.stat().st_size
    db.close()

    gw2 = GatewayProcess(tmp_path, config, name="gw")
    try:
        status = gw2.client.get("/api/v1/recordings/status").json()
        assert status["recovered"]["reopened"] == 1, status
        seg = next(s for s in listing(gw2)["segments"] if s["id"] == first["id"])
        assert 5.0 < seg["duration"] < 9.5, seg
        assert seg["bytes"] <= killed_size
        info = probe(seg_file, decode=True)
        assert info.decoded == info.frames and abs(info.duration - seg["duration"]) < 0.1
        # The restart is an explicit gap, and recording carries on.
        wait_until(lambda: len(listing(gw2)["segments"]) >= 2, 30, "no new segment")
        wait_until(lambda: listing(gw2)["gaps"], 15, "no restart gap")
        assert listing(gw2)["gaps"][0]["reason"] == "restart"
    finally:
        gw2.stop()


@contextlib.contextmanager
def small_filesystem(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_evicts_oldest_keeps_locked_and_recording_continues(
    tmp_path: Path, sim_factory
) -> None:
    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        random_base(),
        "--size",
        "1280x720",
        "--bitrate",
        "4000",
        "--gop",
        "25",
    )
    cam = sim.cameras[0]
    config = gateway_config(cam["rtsp_main"], segment_s=2)
    config["retention"] = {"max_usage_percent": 60, "min_free_mb": 0, "check_interval_s": 1}
    with small_filesystem(tmp_path / "gw-data" / "recordings", "20m") as rec_dir:
        gw = GatewayProcess(tmp_path, config, name="gw")
        try:
            segs = wait_until(
                lambda: [s for s in listing(gw)["segments"] if not s["recording"]], 30, "no segment"
            )
            locked_id = segs[0]["id"]
            r = gw.client.post("/api/v1/recordings/protect", json={"segment_ids": [locked_id]})
            assert r.status_code == 200
            wait_until(
                lambda: gw.client.get("/api/v1/recordings/status").json()["evicted"] >= 3,
                60,
                "no eviction",
            )
            ids = [s["id"] for s in listing(gw)["segments"]]
            assert locked_id in ids
            assert (
                locked_id + 1 not in ids and locked_id + 2 not in ids
            )  # oldest unlocked went first
            newest = listing(gw)["segments"][-1]
            assert time.time() - _ts(newest["end"]) < 6  # still recording

            # Now really fill it: everything locked (nothing to evict) and another program's
            # file takes the rest. ENOSPC must pause recording, not crash the gateway.
            held = [s["id"] for s in listing(gw)["segments"] if s["id"] != locked_id]
            r = gw.client.post("/api/v1/recordings/protect", json={"segment_ids": held})
            assert r.status_code == 200
            filler = rec_dir / "filler.bin"
            with contextlib.suppress(OSError), filler.open("wb") as f:
                while True:
                    f.write(b"\0" * 1_048_576)
            state = lambda: gw.client.get("/api/v1/recordings/status").json()["cameras"][0]["state"]  # noqa: E731
            wait_until(lambda: state() == "paused", 30, "recording did not pause")
            # The gateway is not doing its job: health says so (503) and why.
            health = gw.client.get("/api/v1/health")
            assert health.status_code == 503, health.text
            assert health.json()["disk"]["state"] == "paused"
            assert health.json()["disk"]["paused_cameras"] == ["cam-01"]
            # Live video goes on: the ingest still delivers frames while recording is paused.
            streams = gw.client.get("/api/v1/streams").json()
            hubs = streams if isinstance(streams, list) else streams.get("streams", [])
            assert any(h["camera"] == "cam-01" and h["fps_in"] > 10 for h in hubs), streams
            events = gw.client.get("/api/v1/events", params={"type": "recording_paused"}).json()
            items = events if isinstance(events, list) else events.get("events", [])
            assert any(e["camera"] == "cam-01" for e in items), events
            # The operator frees space: the filler goes and the held footage is released.
            gw.client.post(
                "/api/v1/recordings/protect", json={"segment_ids": held, "locked": False}
            )
            filler.unlink()
            wait_until(lambda: state() == "recording", 30, "recording did not resume")
            assert gw.client.get("/api/v1/health").status_code == 200
            wait_until(
                lambda: any(g["reason"] == "disk_full" for g in listing(gw)["gaps"]),
                30,
                "no disk_full gap",
            )
            assert locked_id in [s["id"] for s in listing(gw)["segments"]]
        finally:
            gw.stop()


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
