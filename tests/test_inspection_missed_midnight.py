"""A village gateway that was off at midnight (power cut) makes the missed daily report
when it comes back and sends it up: the scripted day (a 10 minute camera outage, a
5 minute recording gap) gives the exact figures at the village, the town and the city.

Real processes on loopback; the village's database is seeded with the scripted day
(status events, the recorder's index and gap records) before it starts.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.reports.inspection import aggregate
from gateway.store import reports as report_store
from gateway.store.db import Database
from tests.cascade_support import start_levels, wait_for
from tests.test_inspection import TZ, scripted_day

CAMERA = {
    "id": "cam-01",
    "name": "村口",
    "rtsp_url": "rtsp://127.0.0.1:9/none",
    "recording": {"mode": "continuous"},
}
ONLINE = 100 * (86400 - 600) / 86400  # out 10:00–10:10
RECORDED = 100 * (86400 - 900) / 86400  # and no recording 14:00–14:05 either


def _yesterday() -> date:
    # not across local midnight while the test runs: the gateways' "yesterday" must be ours
    while (now := datetime.now(TZ)).hour == 23 and now.minute >= 58:
        time.sleep(5)
    return now.date() - timedelta(days=1)


def _seed(data_dir: Path, day: date) -> None:
    data_dir.mkdir(parents=True)
    db = Database(data_dir / "gateway.db")
    try:
        scripted_day(db, day)
        report_store.init(db)
        before = (day - timedelta(days=1)).isoformat()  # in service the day before
        body = {**aggregate("village-1", []), "day": before, "final": True}
        report_store.put(db, "village-1", before, body, True)
    finally:
        db.close()


def _row(gw: Any, node: str | None, day: str) -> dict[str, Any] | None:
    params = {"date": day, **({"node": node} if node else {})}
    r = gw.client.get("/api/v1/reports/inspection", params=params)
    if r.status_code != 200 or not r.json()["final"]:
        return None
    rows = r.json()["rows"]
    return rows[0] if rows else None


def test_a_village_off_at_midnight_delivers_exact_figures_to_town_and_city(
    gateway_factory, tmp_path: Path
) -> None:
    day = _yesterday()
    _seed(tmp_path / "village-data", day)  # the data dir gateway_factory gives "village"
    lv = start_levels(
        gateway_factory, village_extra={"cameras": [CAMERA], "motion": {"enabled": False}}
    )
    iso = day.isoformat()
    for gw, node, camera in (
        (lv.village, None, "cam-01"),
        (lv.town, "village-1", "village-1/cam-01"),
        (lv.city, "town-a/village-1", "town-a/village-1/cam-01"),
    ):
        row = wait_for(lambda gw=gw, node=node: _row(gw, node, iso), 90, f"{camera} of {iso}")
        assert row["camera"] == camera
        assert row["online_percent"] == pytest.approx(ONLINE, abs=0.05)
        assert [o["seconds"] for o in row["offline"]] == [600.0]
        rec = row["recording"]
        assert rec["percent"] == pytest.approx(RECORDED, abs=0.05)
        assert [(g["reason"], round(g["seconds"])) for g in rec["gaps"]] == [
            ("camera_offline", 600),
            ("disk_full", 300),
        ]
    # the city's own view of its whole tree for that day carries the same figures
    tree = lv.city.client.get("/api/v1/reports/inspection", params={"date": iso}).json()["tree"]
    assert tree["cameras"] == 1
    assert tree["online_rate"] == pytest.approx(ONLINE, abs=0.05)
    assert tree["recording_completeness"] == pytest.approx(RECORDED, abs=0.05)
