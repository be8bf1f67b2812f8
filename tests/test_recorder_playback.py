"""Clips and the recordings API on segments written by the real writer."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import av
import httpx
import pytest

from gateway.api.server import create_app
from gateway.audit import Audit
from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.recorder.index import segment_path
from gateway.recorder.playback import NothingRecorded, build_clip
from gateway.recorder.service import Recorder
from gateway.recorder.writer import SegmentWriter
from gateway.store.db import Database
from tests.recorder_media import encode_aus

GOP = 25  # 1 s at 25 fps


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


@pytest.fixture
def recorded(tmp_path: Path):
    """cam-01: segments [T, T+4), [T+4, T+8), gap, [T+12, T+16); T an hour ago."""
    # No disk limits: this machine's disk usage must not decide whether a clip is made.
    settings = parse_settings(
        {
            "data_dir": str(tmp_path),
            "retention": {"max_usage_percent": 100, "min_free_mb": 0},
            "auth": {"enabled": False},  # the API answers as an anonymous admin
        }
    )
    db = Database(tmp_path / "gateway.db")
    gw = SimpleNamespace(
        settings=settings,
        data_dir=tmp_path,
        db=db,
        bus=EventBus(db),
        loop=None,
        path="gw",
        audit=Audit(db, settings.audit),  # a download is audited
    )
    rec = Recorder(gw, registry=None, streams=None)
    gw.recorder = rec  # what the recordings API reads
    t0 = round(time.time()) - 3600
    aus = encode_aus(100, gop=GOP)
    for start in (t0, t0 + 4, t0 + 12):
        path = segment_path(rec.root, "cam-01", start)
        w = SegmentWriter(path, aus[0], "h264")
        for au in aus:
            w.write(au)
        res = w.close()
        sid = rec.index.open_segment("cam-01", "main", path, start, "h264", "continuous")
        rec.index.close_segment(sid, "cam-01", start, res.duration, res.bytes, 320, 240, False)
    rec.index.gap("cam-01", t0 + 8, t0 + 12, "camera_offline")
    yield SimpleNamespace(gw=gw, rec=rec, t0=t0, tmp=tmp_path)
    db.close()


def frames_and_span(path: Path) -> tuple[int, float, int]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pkts = [p for p in c.demux(s) if p.dts is not None]
        decoded = sum(len(s.codec_context.decode(p)) for p in pkts)
        span = float((pkts[-1].dts - pkts[0].dts) * s.time_base)
        assert pkts[0].is_keyframe
        return len(pkts), span, decoded


def test_clip_starts_at_the_keyframe_before_start_and_ends_at_end(recorded) -> None:
    t0, rec = recorded.t0, recorded.rec
    out = recorded.tmp / "c.mp4"
    clip = build_clip(rec.index, "cam-01", t0 + 2.5, t0 + 6.0, out)
    assert clip.start == pytest.approx(t0 + 2.0)  # keyframe at or before start (GOP 1 s)
    assert clip.frames == (6.0 - 2.0) * 25
    n, span, decoded = frames_and_span(out)
    assert n == decoded == 100 and span == pytest.approx(3.96, abs=0.001)
    # Exactly on a keyframe: no earlier GOP.
    clip = build_clip(rec.index, "cam-01", t0 + 5.0, t0 + 5.5, out)
    assert clip.start == pytest.approx(t0 + 5.0) and clip.frames == 13


def test_clip_across_a_gap_keeps_wall_clock_time(recorded) -> None:
    t0, rec = recorded.t0, recorded.rec
    out = recorded.tmp / "c.mp4"
    clip = build_clip(rec.index, "cam-01", t0 + 7.0, t0 + 13.0, out)
    assert clip.frames == 25 + 25
    _, span, _ = frames_and_span(out)
    assert span == pytest.approx(13.0 - 7.0 - 0.04, abs=0.001)  # the gap is held, not cut
    with pytest.raises(NothingRecorded):
        build_clip(rec.index, "cam-01", t0 + 8.5, t0 + 11.5, out)


async def api(recorded) -> httpx.AsyncClient:
    app = create_app(recorded.gw, manage_lifecycle=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_recordings_api_lists_segments_gaps_and_events(recorded) -> None:
    t0 = recorded.t0
    recorded.gw.bus.publish(
        Event(camera="cam-01", type="motion", start=datetime.fromtimestamp(t0 + 5, UTC))
    )
    async with await api(recorded) as client:
        r = await client.get(
            "/api/v1/recordings",
            params={"camera": "cam-01", "start": iso(t0 - 60), "end": iso(t0 + 60)},
        )
        assert r.status_code == 200
        body = r.json()
        assert [s["duration"] for s in body["segments"]] == [4.0, 4.0, 4.0]
        assert set(body["segments"][0]) >= {
            "id",
            "start",
            "end",
            "duration",
            "bytes",
            "has_event",
            "locked",
        }
        assert "path" not in body["segments"][0]
        assert body["gaps"] == [
            {
                "start": iso(t0 + 8).replace("+00:00", ".000+00:00"),
                "end": iso(t0 + 12).replace("+00:00", ".000+00:00"),
                "duration": 4.0,
                "reason": "camera_offline",
            }
        ]
        assert [e["type"] for e in body["events"]] == ["motion"]
        r = await client.get(
            "/api/v1/recordings", params={"camera": "cam-01", "start": "yesterday"}
        )
        assert r.status_code == 400
        r = await client.get(
            "/api/v1/recordings", params={"camera": "cam-01", "start": iso(t0), "end": iso(t0 - 1)}
        )
        assert r.status_code == 400


async def test_clip_endpoint_serves_ranges_and_refuses_bad_requests(recorded) -> None:
    t0 = recorded.t0
    url = "/api/v1/recordings/cam-01/clip.mp4"
    async with await api(recorded) as client:
        r = await client.get(url, params={"start": iso(t0 + 1), "end": iso(t0 + 3), "download": 1})
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert "attachment" in r.headers["content-disposition"]
        full = r.content
        assert full[4:8] == b"ftyp" and full.find(b"moov") < full.find(b"mdat")  # faststart
        r = await client.get(
            url,
            params={"start": iso(t0 + 1), "end": iso(t0 + 3)},
            headers={"Range": "bytes=100-199"},
        )
        assert r.status_code == 206 and r.content == full[100:200]
        assert r.headers["content-range"] == f"bytes 100-199/{len(full)}"
        assert (
            await client.get(url, params={"start": iso(t0 + 3), "end": iso(t0 + 1)})
        ).status_code == 400
        assert (await client.get(url, params={"start": "x", "end": iso(t0)})).status_code == 400
        assert (
            await client.get(url, params={"start": iso(t0 + 9), "end": iso(t0 + 11)})
        ).status_code == 404
        assert (
            await client.get(
                "/api/v1/recordings/cam-99/clip.mp4", params={"start": iso(t0), "end": iso(t0 + 1)}
            )
        ).status_code == 404
        # Capped at an hour.
        r = await client.get(url, params={"start": iso(t0), "end": iso(t0 + 7200)})
        assert r.status_code == 200 and r.headers["x-clip-truncated"] == "1"


async def test_segments_and_protect_accept_ids_only(recorded) -> None:
    rec = recorded.rec
    seg = rec.index.segments("cam-01", 0, time.time())[0]
    async with await api(recorded) as client:
        r = await client.get(f"/api/v1/recordings/cam-01/segments/{seg['id']}.mp4")
        assert r.status_code == 200 and r.content == rec.index.abs(seg["path"]).read_bytes()
        assert (
            await client.get(f"/api/v1/recordings/cam-02/segments/{seg['id']}.mp4")
        ).status_code == 404
        assert (
            await client.get("/api/v1/recordings/cam-01/segments/..%2F..%2Fgateway.db.mp4")
        ).status_code in (404, 422)
        assert (await client.get("/api/v1/recordings/../gateway.db/clip.mp4")).status_code in (
            400,
            404,
        )
        r = await client.post(
            "/api/v1/recordings/protect", json={"segment_ids": [seg["id"]], "locked": True}
        )
        assert r.status_code == 200
        assert rec.index.get(seg["id"])["locked"] == 1
        ev = recorded.gw.bus.publish(
            Event(
                camera="cam-01", type="motion", start=datetime.fromtimestamp(recorded.t0 + 13, UTC)
            )
        )
        r = await client.post("/api/v1/recordings/protect", json={"event_id": ev.id})
        assert r.status_code == 200 and len(r.json()["segments"]) == 1
        assert rec.index.segments("cam-01", recorded.t0 + 12, recorded.t0 + 13)[0]["locked"] == 1
        r = await client.post(
            "/api/v1/recordings/protect", json={"event_id": ev.id, "locked": False}
        )
        assert rec.index.segments("cam-01", recorded.t0 + 12, recorded.t0 + 13)[0]["locked"] == 0
        assert (
            await client.post("/api/v1/recordings/protect", json={"event_id": "nope"})
        ).status_code == 404
        assert (await client.post("/api/v1/recordings/protect", json={})).status_code == 400
