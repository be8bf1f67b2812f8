"""Inspection reports are kept ``keep_days`` (default 400) and then deleted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.config import ReportSettings
from gateway.reports.inspection import aggregate
from gateway.reports.service import ReportService
from gateway.store import reports as report_store
from gateway.store.db import Database
from tests.test_inspection import DAY, at


def test_reports_older_than_keep_days_are_deleted(tmp_path: Path) -> None:
    assert ReportSettings().keep_days == 400
    db = Database(tmp_path / "gw.db")
    svc = ReportService(ReportSettings(), db, "town-a", list, set, clock=lambda: at(12))
    ages = (401, 400, 10, 0)
    for node in ("town-a", "village-1"):  # its own and those its children sent up
        for age in ages:
            day = (DAY - timedelta(days=age)).isoformat()
            report_store.put(db, node, day, {**aggregate(node, []), "day": day}, True)
    svc.prune()
    kept = [(DAY - timedelta(days=age)).isoformat() for age in ages[1:]]
    assert svc.days() == kept[::-1] and report_store.days(db, "village-1") == kept[::-1]
