"""``gw.reports``: the daily inspection (设备巡检) of this gateway's cameras, and on demand.

Once a day at ``reports.run_at`` (local time in ``reports.timezone``) yesterday's
report is made and stored final; ``run()`` makes today's so far (or any day's) on
demand. Reports are kept ``keep_days`` in SQLite (:mod:`gateway.store.reports`).
Cameras come from the registry (or the static config); the recording policy of each
from the recorder, when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.config import ReportSettings
from gateway.reports.inspection import aggregate, day_window, inspect_camera
from gateway.store import reports as report_store
from gateway.store.db import Database

log = logging.getLogger(__name__)

Cameras = Callable[[], list[tuple[str, str]]]  # (id, name) of the local cameras
Continuous = Callable[[], set[str]]  # ids of the cameras recorded continuously


class ReportService:
    """The ``reports`` part: makes, stores and serves inspection reports."""

    def __init__(
        self,
        settings: ReportSettings,
        db: Database,
        node: str,
        cameras: Cameras,
        continuous: Continuous,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.db = db
        self.node = node
        self.cameras = cameras
        self.continuous = continuous
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.last_error = ""
        report_store.init(db)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._daily(), name="inspection reports")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- days --------------------------------------------------------------------------
    def today(self) -> date:
        return datetime.fromtimestamp(self.clock(), self.tz).date()

    def seconds_to_next_run(self) -> float:
        hour, minute = (int(x) for x in self.settings.run_at.split(":"))
        now = datetime.fromtimestamp(self.clock(), self.tz)
        due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if due <= now:
            due = datetime.combine(now.date() + timedelta(days=1), due.timetz())
        return max(1.0, due.timestamp() - now.timestamp())

    async def _daily(self) -> None:
        # a report missed while the gateway was down is made when it comes back
        await asyncio.to_thread(self._catch_up)
        while True:
            await asyncio.sleep(self.seconds_to_next_run())
            try:
                await asyncio.to_thread(self.run, self.today() - timedelta(days=1))
                cutoff = self.today() - timedelta(days=self.settings.keep_days)
                report_store.delete_before(self.db, cutoff.isoformat())
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
                log.exception("daily inspection failed")

    def _catch_up(self) -> None:
        yesterday = (self.today() - timedelta(days=1)).isoformat()
        stored = report_store.get(self.db, self.node, yesterday)
        if stored is None or not stored.get("final"):
            try:
                self.run(date.fromisoformat(yesterday))
            except Exception:
                log.exception("inspection of %s failed", yesterday)

    # -- making a report ---------------------------------------------------------------
    def run(self, day: date | None = None) -> dict[str, Any]:
        """Inspect ``day`` (default today, so far) and store the report."""
        day = day or self.today()
        if day > self.today():
            raise ValueError(f"{day} is in the future / 日期不能晚于今天")
        start, end = day_window(day, self.tz)
        now = self.clock()
        final = now >= end
        end = min(end, now)
        continuous = self.continuous()
        rows = [
            inspect_camera(
                self.db,
                cid,
                start,
                end,
                continuous=cid in continuous,
                min_gap_s=self.settings.min_gap_s,
                name=name,
            )
            for cid, name in self.cameras()
        ]
        report = {
            **aggregate(self.node, rows),
            "day": day.isoformat(),
            "timezone": self.settings.timezone,
            "start": start,
            "end": end,
            "final": final,
            "created": now,
        }
        report_store.put(self.db, self.node, day.isoformat(), report, final)
        self.runs += 1
        log.info(
            "inspection %s %s: %d cameras, online %.1f %%, recording %s",
            self.node,
            day,
            report["cameras"],
            report["online_rate"] or 0.0,
            report["recording_completeness"],
        )
        return report

    def get(self, day: date | None = None) -> dict[str, Any] | None:
        return report_store.get(self.db, self.node, day.isoformat() if day else None)

    def days(self) -> list[str]:
        return report_store.days(self.db, self.node)


def _cameras(gw: Any) -> Cameras:
    def cameras() -> list[tuple[str, str]]:
        registry = gw.part("registry")
        listed = registry.list() if registry is not None else gw.settings.cameras
        return [
            (c.id, getattr(c, "name", "") or "")
            for c in listed
            if c.id and "/" not in c.id and getattr(c, "enabled", True)
        ]

    return cameras


def _continuous(gw: Any) -> Continuous:
    def continuous() -> set[str]:
        recorder = gw.part("recorder")
        if recorder is None:
            return set()
        return {cid for cid, p in recorder.policies().items() if p.continuous}

    return continuous


def build(gw: Any) -> ReportService | None:
    """Factory for ``gateway.app._factories()``: None when reports are turned off."""
    settings: ReportSettings = gw.settings.reports
    if not settings.enabled:
        return None
    return ReportService(settings, gw.db, gw.path, _cameras(gw), _continuous(gw))
