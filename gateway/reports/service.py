"""The ``reports`` part: the daily inspection (设备巡检) of this gateway's cameras, and on demand.

Once a day at ``reports.run_at`` (local time in ``reports.timezone``) yesterday's
report is made and stored final; ``run()`` makes today's so far (or any day's) on
demand. Reports are kept ``keep_days`` in SQLite (:mod:`gateway.store.reports`).
Cameras come from the registry (or the static config); the recording policy of each
from the recorder, when it runs.

Roll-up through the cascade: each made report is also published on the bus as an
``inspection`` event (node figures and this gateway's camera rows). Like every event
it goes up through the uplink's durable outbox, so a child that was offline at the
daily run delivers its report when it comes back. A parent stores the reports that
arrive from below under the child's path (relative to itself, camera paths prefixed),
and serves any node of its subtree, with the figures over that node's whole subtree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.cameras.model import Camera
from gateway.cameras.registry import Registry
from gateway.config import CameraConfig, ReportSettings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.recorder.service import Recorder
from gateway.reports.inspection import aggregate, day_window, inspect_camera
from gateway.store import reports as report_store
from gateway.store.db import Database

log = logging.getLogger(__name__)

MAX_LISTED = 100  # gaps/outages per camera sent up; subtree rows served worst first
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
        bus: EventBus | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.node = node
        self.cameras = cameras
        self.continuous = continuous
        self.clock = clock
        self.bus = bus
        self.received = 0  # reports stored from below
        self.last: dict[str, Any] | None = None  # the latest day's report made here
        self.tz = ZoneInfo(settings.timezone)
        self._task: asyncio.Task[None] | None = None
        self.runs = 0
        self.last_error = ""
        report_store.init(db)

    async def start(self) -> None:
        if self.bus is not None:
            self.bus.add_listener(self._on_event)
        self._task = asyncio.create_task(self._daily(), name="inspection reports")

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.remove_listener(self._on_event)
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
                await asyncio.to_thread(self.prune)
            except Exception as err:
                self.last_error = f"{type(err).__name__}: {err}"
                log.exception("daily inspection failed")

    def prune(self) -> int:
        """Delete the reports older than ``keep_days`` (default 400); how many went."""
        cutoff = self.today() - timedelta(days=self.settings.keep_days)
        return report_store.delete_before(self.db, cutoff.isoformat())

    def _catch_up(self) -> None:
        yesterday = (self.today() - timedelta(days=1)).isoformat()
        stored = report_store.get(self.db, self.node, yesterday)
        if stored is None or not stored.get("final"):
            # A gateway in service then (a report of yesterday or before: it was off at
            # midnight, say a village's power cut) sends the missed report up now, once:
            # next start finds it final. A brand-new one makes it but claims nothing up.
            in_service = stored is not None or any(
                d < yesterday for d in report_store.days(self.db, self.node, limit=10)
            )
            try:
                self.run(date.fromisoformat(yesterday), publish=in_service)
            except Exception:
                log.exception("inspection of %s failed", yesterday)

    # -- making a report ---------------------------------------------------------------
    def run(
        self, day: date | None = None, publish: bool = True, run: str | None = None
    ) -> dict[str, Any]:
        """Inspect ``day`` (default today, so far), store the report and send it up.

        ``run`` is the id of an on-demand inspection (:mod:`gateway.cascade.inspect`):
        it goes up with the report, even one without cameras, so the gateway that asked
        sees that this node has answered.
        """
        day = day or self.today()
        if day > self.today():
            raise ValueError(f"{day} is in the future / 日期不能晚于今天")
        start, end = day_window(day, self.tz)
        now = self.clock()
        final = now >= end
        end = min(end, now)
        continuous = self.continuous()
        snapshots = report_store.snapshot_times(self.db)
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
        for row in rows:  # a fresh snapshot taken within the day (by an on-demand run)
            taken = snapshots.get(row["camera"])
            row["snapshot"] = taken if taken is not None and start <= taken <= end else None
        report = {
            **aggregate(self.node, rows),
            "day": day.isoformat(),
            "timezone": self.settings.timezone,
            "start": start,
            "end": end,
            "final": final,
            "created": now,
        }
        if run:
            report["run"] = run
        report_store.put(self.db, self.node, day.isoformat(), report, final)
        self.runs += 1
        if self.last is None or report["day"] >= self.last["day"]:
            self.last = report
        if publish:
            self._send_up(report)
        log.info(
            "inspection %s %s: %d cameras, online %.1f %%, recording %s",
            self.node,
            day,
            report["cameras"],
            report["online_rate"] or 0.0,
            report["recording_completeness"],
        )
        return report

    def put_snapshot(self, camera: str, jpeg: bytes) -> None:
        """Keep a fresh snapshot of a local camera for its inspection row."""
        report_store.put_snapshot(self.db, camera, self.clock(), jpeg)

    def snapshot(self, camera: str) -> bytes | None:
        """The latest inspection snapshot of a local camera, if any."""
        found = report_store.get_snapshot(self.db, camera)
        return found[1] if found else None

    def metrics(self) -> Iterator[Any]:
        """Prometheus: per camera the figures of the latest report (today's when made)."""
        from gateway.metrics import Sample

        report = self.last
        if report is None:
            return
        for row in report["rows"]:
            labels = {"camera": row["camera"]}
            if row["online_percent"] is not None:
                yield Sample(
                    "inspection_online_percent",
                    row["online_percent"],
                    labels,
                    "Online time of the latest inspection day, %",
                )
            if row["recording"] and row["recording"]["percent"] is not None:
                yield Sample(
                    "inspection_recording_percent",
                    row["recording"]["percent"],
                    labels,
                    "Recording completeness of the latest inspection day, %",
                )
        yield Sample("inspection_runs_total", self.runs, {}, "Inspections made", "counter")

    def _empty(self, key: str, day: date | None) -> dict[str, Any] | None:
        """A report with no cameras for ``key``, when nodes below it have one that day."""
        prefix = None if key == self.node else key
        wanted = day.isoformat() if day else report_store.latest_day(self.db, prefix)
        if wanted is None:
            return None
        below = [
            r
            for r in report_store.for_day(self.db, wanted)
            if r["node"] != key and (prefix is None or r["node"].startswith(prefix + "/"))
        ]
        if not below:
            return None
        return {
            **aggregate(key, []),
            "day": wanted,
            "timezone": self.settings.timezone,
            "final": all(r.get("final") for r in below),
        }

    # -- the cascade roll-up -------------------------------------------------------------
    def _send_up(self, report: dict[str, Any]) -> None:
        # Nothing to send for a gateway without cameras (its parent aggregates the nodes
        # below it anyway), except the answer to an on-demand run (whose asker waits).
        if self.bus is None or not (report["rows"] or report.get("run")):
            return
        rows = [{**r, "offline": r["offline"][:MAX_LISTED]} for r in report["rows"]]
        for r in rows:
            if r["recording"]:
                r["recording"] = {**r["recording"], "gaps": r["recording"]["gaps"][:MAX_LISTED]}
        event = Event(
            type="inspection",
            source=self.node,
            data={**report, "rows": rows, "name": "巡检报告", "name_en": "inspection report"},
        )
        try:
            self.bus.publish(event)
        except Exception:
            log.exception("publishing the inspection report failed")

    def _on_event(self, event: Event) -> None:
        """Bus listener: store a report that arrived from a child (any depth)."""
        source = event.source
        # the uplink names a node-level event's camera after the node itself
        if event.type != "inspection" or source in ("", self.node) or event.camera != source:
            return
        data = dict(event.data)
        day = data.get("day")
        if not isinstance(day, str) or not isinstance(data.get("rows"), list):
            log.warning("inspection report from %s without day or rows ignored", source)
            return
        try:
            date.fromisoformat(day)
            data["rows"] = [{**r, "camera": f"{source}/{r['camera']}"} for r in data["rows"]]
        except (ValueError, TypeError, KeyError):
            log.warning("malformed inspection report from %s ignored", source)
            return
        if not data["rows"]:
            return  # an on-demand run's answer from a gateway without cameras: no report
        data["node"] = source
        report_store.put(self.db, source, day, data, bool(data.get("final")))
        self.received += 1

    def get(self, day: date | None = None, node: str | None = None) -> dict[str, Any] | None:
        """The report of ``node`` (this gateway, or a path below it) with its subtree's
        figures (``tree``) and its children's (``children``), worst first."""
        key = node or self.node
        base = report_store.get(self.db, key, day.isoformat() if day else None)
        if base is None:
            base = self._empty(key, day)  # a node without cameras of its own
            if base is None:
                return None
        below = [
            r
            for r in report_store.for_day(self.db, base["day"])
            if r["node"] != key and (key == self.node or r["node"].startswith(key + "/"))
        ]
        rows = list(base["rows"]) + [row for r in below for row in r["rows"]]
        tree = aggregate(key, rows)
        tree["rows"] = tree["rows"][:MAX_LISTED]
        children = [
            {k: r.get(k) for k in ("node", "cameras", "online_rate", "recording_completeness",
                                   "cameras_with_faults", "final", "created")}
            for r in below
        ]  # fmt: skip
        children.sort(key=lambda c: (c["online_rate"] is None, c["online_rate"] or 0.0))
        return {**base, "node": key, "tree": tree, "children": children}

    def days(self, node: str | None = None) -> list[str]:
        return report_store.days(self.db, node or self.node)

    def trend(self, node: str | None = None, days: int = 30) -> list[dict[str, Any]]:
        """The subtree figures of ``node`` for its last ``days`` stored days, oldest first."""
        out = []
        key = node or self.node
        below = None if key == self.node else key
        for day in reversed(report_store.days_with_below(self.db, key, below, days)):
            report = self.get(date.fromisoformat(day), node)
            if report is None:
                continue
            tree = report["tree"]
            out.append(
                {
                    "day": day,
                    "cameras": tree["cameras"],
                    "online_rate": tree["online_rate"],
                    "recording_completeness": tree["recording_completeness"],
                    "cameras_with_faults": tree["cameras_with_faults"],
                    "final": report.get("final", False),
                }
            )
        return out


def local_cameras(registry: Registry | None, configured: list[CameraConfig]) -> Cameras:
    """This gateway's own enabled cameras: the registry's, or the config's without one."""

    def cameras() -> list[tuple[str, str]]:
        listed: list[Camera] | list[CameraConfig] = (
            registry.list() if registry is not None else configured
        )
        return [(c.id, c.name or "") for c in listed if c.id and "/" not in c.id and c.enabled]

    return cameras


def continuous_cameras(recorder: Recorder | None) -> Continuous:
    """The cameras the recorder records continuously (none without a recorder)."""

    def continuous() -> set[str]:
        if recorder is None:
            return set()
        return {cid for cid, p in recorder.policies().items() if p.continuous}

    return continuous
