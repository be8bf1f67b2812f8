"""Inspection (巡检): a scripted day gives exact online and completeness figures;
reports are stored per day in SQLite and served by the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config import ConfigError, ReportSettings, parse_settings
from gateway.events.model import Event
from gateway.reports.service import ReportService
from gateway.store import events as event_store
from gateway.store import recordings as rec_store
from gateway.store.db import Database
from tests.cascade_support import start_levels, wait_for

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 20)


def at(hh: int, mm: int = 0, day: date = DAY) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=TZ).timestamp()


def status(db: Database, camera: str, t: float, online: bool) -> None:
    event_store.upsert(
        db,
        Event(
            camera=camera,
            type="camera_online" if online else "camera_offline",
            start=datetime.fromtimestamp(t, UTC),  # the gateway stores UTC
        ),
    )


def scripted_day(db: Database, day: date = DAY) -> None:
    """cam-01: online since yesterday, out 10:00–10:10; recorded in 60 s segments
    (0.4 s holes at the joins) except 10:00–10:10 (camera offline) and a 5 minute gap
    at 14:00 that the recorder logged as disk_full. cam-02: online all day, not
    recorded, covered 11:00–11:30."""
    event_store.init(db)
    rec_store.init(db)
    status(db, "cam-01", at(9, day=day - timedelta(days=1)), True)
    status(db, "cam-01", at(10, 0, day), False)
    status(db, "cam-01", at(10, 10, day), True)
    status(db, "cam-02", at(8, day=day - timedelta(days=1)), True)
    t, n = at(0, 0, day) - 60, 0
    while t < at(0, day=day + timedelta(days=1)):
        skip = at(10, 0, day) <= t < at(10, 10, day) or at(14, 0, day) <= t < at(14, 5, day)
        if not skip:
            rec_store.insert_segment(
                db,
                camera="cam-01",
                start=t,
                end=t + 59.6,
                path=f"cam-01/{day}/{n}.mp4",
                status="closed",
            )
        t, n = t + 60, n + 1
    rec_store.insert_gap(db, "cam-01", at(14, 0, day), at(14, 5, day), "disk_full")
    event_store.upsert(
        db,
        Event(
            camera="cam-02",
            type="diagnosis",
            start=datetime.fromtimestamp(at(11, 0, day), UTC),
            end=datetime.fromtimestamp(at(11, 30, day), UTC),
            data={"kind": "occlusion", "name": "遮挡", "reason": "遮挡：66% 的画面被遮挡"},
        ),
    )


def service(db: Database, now: float) -> ReportService:
    return ReportService(
        ReportSettings(),
        db,
        "town-a",
        lambda: [("cam-01", "村口"), ("cam-02", "学校门口")],
        lambda: {"cam-01"},
        clock=lambda: now,
    )


def test_scripted_outage_and_recording_gap_give_exact_figures(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    scripted_day(db)
    svc = service(db, at(0, 30, DAY + timedelta(days=1)))
    report = svc.run(DAY)
    assert (
        report["final"]
        and report["day"] == "2026-11-20"
        and report["end"] - report["start"] == 86400
    )
    cam1, cam2 = report["rows"]  # worst first
    assert cam1["camera"] == "cam-01" and cam2["camera"] == "cam-02"
    assert cam1["online_percent"] == pytest.approx(100 * (86400 - 600) / 86400, abs=0.01)
    assert cam1["offline"] == [{"start": at(10), "end": at(10, 10), "seconds": 600.0}]
    rec = cam1["recording"]
    assert rec["percent"] == pytest.approx(100 * (86400 - 900) / 86400, abs=0.01)
    gaps = [(g["start"], g["end"], g["reason"]) for g in rec["gaps"]]
    assert gaps == [
        (pytest.approx(at(10), abs=1), at(10, 10), "camera_offline"),
        (pytest.approx(at(14), abs=1), at(14, 5), "disk_full"),
    ]
    assert cam2["online_percent"] == 100.0 and cam2["recording"] is None
    assert cam2["faults"] == ["occlusion"] and cam2["diagnosis"][0]["seconds"] == 1800.0
    assert report["online_rate"] == pytest.approx((cam1["online_percent"] + 100) / 2, abs=0.01)
    assert report["recording_completeness"] == rec["percent"]
    assert report["cameras_with_faults"] == 1
    samples = {(m.name, m.labels.get("camera")): m.value for m in svc.metrics()}
    assert samples[("inspection_online_percent", "cam-01")] == cam1["online_percent"]
    assert samples[("inspection_recording_percent", "cam-01")] == rec["percent"]
    assert ("inspection_recording_percent", "cam-02") not in samples
    stored = svc.get(DAY)
    assert stored is not None and {k: stored[k] for k in report} == report
    assert stored["tree"]["cameras"] == 2 and stored["children"] == []
    assert svc.days() == ["2026-11-20"]


def test_today_so_far_is_not_final_and_the_future_is_refused(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    scripted_day(db)
    svc = service(db, at(12))
    report = svc.run()
    assert not report["final"] and report["end"] == at(12)
    cam1 = next(r for r in report["rows"] if r["camera"] == "cam-01")
    assert cam1["online_percent"] == pytest.approx(100 * (12 * 3600 - 600) / (12 * 3600), abs=0.01)
    with pytest.raises(ValueError, match="future"):
        svc.run(DAY + timedelta(days=1))
    assert 0 < svc.seconds_to_next_run() <= 86400
    with pytest.raises(ConfigError, match="time zone"):
        parse_settings({"reports": {"timezone": "Mars/Olympus"}})


def test_reports_roll_up_from_village_through_town_to_city(gateway_factory) -> None:
    camera = {"id": "cam-01", "rtsp_url": "rtsp://127.0.0.1:9/none"}
    quiet = {"motion": {"enabled": False}}
    lv = start_levels(gateway_factory, village_extra={"cameras": [camera], **quiet})
    village, town, city = lv.village, lv.town, lv.city
    # on start each gateway makes yesterday's final report (it was down at the daily run)
    latest = wait_for(
        lambda: (r := village.client.get("/api/v1/reports/inspection")).status_code == 200 and r,
        20,
        "yesterday's report at the village",
    )
    assert latest.json()["final"] and latest.json()["rows"][0]["online_percent"] == 0.0

    r = village.client.post("/api/v1/reports/inspection/run", json={})
    assert r.status_code == 200, r.text
    report = r.json()
    day = report["day"]
    assert report["cameras"] == 1 and report["rows"][0]["camera"] == "cam-01"
    assert report["timezone"] == "Asia/Shanghai" and not report["final"]
    yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    assert latest.json()["day"] == yesterday
    assert village.client.get("/api/v1/reports/inspection/days").json() == [day, yesterday]
    for bad, code in ((("node", "elsewhere"), 404), (("date", "soon"), 422)):
        assert village.client.get("/api/v1/reports/inspection", params=[bad]).status_code == code
    future = (date.fromisoformat(day) + timedelta(days=2)).isoformat()
    assert (
        village.client.post("/api/v1/reports/inspection/run", json={"date": future}).status_code
        == 400
    )

    # up the cascade: the town and the city store the village's report under its path
    params = {"node": "town-a/village-1", "date": day}
    got = wait_for(
        lambda: (
            (r := city.client.get("/api/v1/reports/inspection", params=params)).status_code == 200
            and r.json()
        ),
        20,
        "the village's report at the city",
    )
    assert [row["camera"] for row in got["rows"]] == ["town-a/village-1/cam-01"]
    at_town = town.client.get(
        "/api/v1/reports/inspection", params={"node": "village-1", "date": day}
    )
    assert at_town.status_code == 200 and at_town.json()["rows"][0]["camera"] == "village-1/cam-01"
    # the city's own report counts the whole tree below it; the town has no cameras of its
    # own, so it sends nothing up, and its node is served from the nodes below it
    own = city.client.get("/api/v1/reports/inspection", params={"date": day}).json()
    assert own["cameras"] == 0 and own["tree"]["cameras"] == 1
    assert own["tree"]["online_rate"] == 0.0
    assert [c["node"] for c in own["children"]] == ["town-a/village-1"]
    sub = city.client.get("/api/v1/reports/inspection", params={"node": "town-a"})
    assert sub.status_code == 200 and sub.json()["day"] == day
    assert sub.json()["tree"]["rows"][0]["camera"] == "town-a/village-1/cam-01"
    assert (
        city.client.get("/api/v1/reports/inspection", params={"node": "town-b"}).status_code == 404
    )
    trend = city.client.get("/api/v1/reports/inspection/trend").json()
    assert trend[-1]["day"] == day and trend[-1]["cameras"] == 1
