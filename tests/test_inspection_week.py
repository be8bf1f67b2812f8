"""The week's report (周报): seven stored days of a node's subtree, summed per camera."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.reports.week import week_report
from gateway.store import reports as report_store
from gateway.store.db import Database
from tests.test_inspection import DAY, at, scripted_day, service


def test_a_week_sums_the_scripted_days_and_the_reports_from_below(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    before = DAY - timedelta(days=1)
    scripted_day(db, before)
    scripted_day(db, DAY)
    svc = service(db, at(0, 30, DAY + timedelta(days=1)))
    svc.run(before)
    svc.run(DAY)
    # a village's report of DAY, as the town stores it (camera paths prefixed)
    row = {**svc.get(DAY)["rows"][0], "camera": "village-1/cam-01", "faults": [], "diagnosis": []}
    report = {"node": "village-1", "day": DAY.isoformat(), "start": at(0), "end": at(0) + 86400}
    report_store.put(db, "village-1", DAY.isoformat(), {**report, "rows": [row]}, True)

    week = week_report(db, "town-a", "town-a", DAY)
    assert week is not None and week["period"] == "week"
    assert (week["start_day"], week["day"]) == (
        (DAY - timedelta(days=6)).isoformat(),
        DAY.isoformat(),
    )
    assert week["days"] == [before.isoformat(), DAY.isoformat()] and not week["final"]
    rows = {r["camera"]: r for r in week["tree"]["rows"]}
    assert set(rows) == {"cam-01", "cam-02", "village-1/cam-01"}
    cam1 = rows["cam-01"]
    assert cam1["days"] == 2 and len(cam1["offline"]) == 2
    assert cam1["online_percent"] == pytest.approx(100 * (2 * 86400 - 1200) / (2 * 86400), abs=0.01)
    rec = cam1["recording"]
    assert rec["percent"] == pytest.approx(100 * (2 * 86400 - 1800) / (2 * 86400), abs=0.01)
    assert [g["reason"] for g in rec["gaps"]] == ["camera_offline", "disk_full"] * 2
    assert rows["cam-02"]["faults"] == ["occlusion"] and len(rows["cam-02"]["diagnosis"]) == 2
    assert rows["village-1/cam-01"]["days"] == 1
    assert [c["node"] for c in week["children"]] == ["village-1"]
    assert week["children"][0]["cameras"] == 1
    # the village's own week holds only its camera; a week with no report is None
    village = week_report(db, "town-a", "village-1", DAY)
    assert village is not None and [r["camera"] for r in village["rows"]] == ["village-1/cam-01"]
    assert week_report(db, "town-a", "town-a", DAY - timedelta(days=30)) is None
