"""A week's inspection (周报): seven stored days of a node's subtree, summed per camera.

Per camera: online seconds over the days' spans, recorded over expected seconds, the
outages, gaps and diagnosis states of every day (bounded), the union of the faults.
Per node below: the same figures over its cameras. Nothing is inspected again: it
reads the daily reports (this gateway's and those its children sent up).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from gateway.reports.inspection import aggregate
from gateway.store import reports as report_store
from gateway.store.db import Database

MAX_LISTED = 100  # outages, gaps, diagnosis states per camera; cameras listed


def _span(report: dict[str, Any], row: dict[str, Any]) -> float:
    try:
        span = float(report["end"]) - float(report["start"])
    except (KeyError, TypeError, ValueError):
        span = 0.0
    if span <= 0:  # a report without its window: what the row itself accounts for
        span = float(row.get("online_s") or 0) + sum(o["seconds"] for o in row["offline"])
    return span


def _add(acc: dict[str, Any], row: dict[str, Any], span: float) -> None:
    acc["name"] = row.get("name") or acc["name"]
    acc["online_s"] += float(row.get("online_s") or 0)
    acc["span"] += span
    acc["offline"] = (acc["offline"] + list(row.get("offline") or []))[:MAX_LISTED]
    acc["diagnosis"] = (acc["diagnosis"] + list(row.get("diagnosis") or []))[:MAX_LISTED]
    acc["faults"] |= set(row.get("faults") or [])
    acc["snapshot"] = row.get("snapshot") or acc["snapshot"]
    acc["days"] += 1
    rec = row.get("recording")
    if rec:
        total = acc["recording"] or {"expected_s": 0.0, "recorded_s": 0.0, "gaps": []}
        total["expected_s"] += float(rec.get("expected_s") or 0)
        total["recorded_s"] += float(rec.get("recorded_s") or 0)
        total["gaps"] = (total["gaps"] + list(rec.get("gaps") or []))[:MAX_LISTED]
        acc["recording"] = total


def _finish(camera: str, acc: dict[str, Any]) -> dict[str, Any]:
    rec = acc["recording"]
    if rec is not None:
        expected = rec["expected_s"]
        rec = {
            **rec,
            "expected_s": round(expected, 1),
            "recorded_s": round(rec["recorded_s"], 1),
            "percent": round(100 * rec["recorded_s"] / expected, 3) if expected > 0 else None,
        }
    span = acc["span"]
    return {
        "camera": camera,
        "name": acc["name"],
        "online_s": round(acc["online_s"], 1),
        "online_percent": round(100 * acc["online_s"] / span, 3) if span > 0 else None,
        "offline": acc["offline"],
        "recording": rec,
        "diagnosis": acc["diagnosis"],
        "faults": sorted(acc["faults"]),
        "snapshot": acc["snapshot"],
        "days": acc["days"],
    }


def week_report(db: Database, own: str, key: str, end: date) -> dict[str, Any] | None:
    """The seven days ending ``end`` of node ``key`` (``own`` = this gateway's node)."""
    days = [end - timedelta(days=i) for i in range(6, -1, -1)]
    cameras: dict[str, dict[str, Any]] = {}
    by_node: dict[str, set[str]] = {}
    found: list[str] = []
    final = True
    for day in days:
        reports = [
            r
            for r in report_store.for_day(db, day.isoformat())
            if key == own or r["node"] == key or r["node"].startswith(key + "/")
        ]
        if reports:
            found.append(day.isoformat())
        for report in reports:
            final = final and bool(report.get("final"))
            for row in report.get("rows") or []:
                acc = cameras.setdefault(
                    row["camera"],
                    {"name": "", "online_s": 0.0, "span": 0.0, "offline": [], "diagnosis": [],
                     "faults": set(), "snapshot": None, "days": 0, "recording": None},
                )  # fmt: skip
                _add(acc, row, _span(report, row))
                by_node.setdefault(report["node"], set()).add(row["camera"])
    if not found:
        return None
    rows = [_finish(camera, acc) for camera, acc in cameras.items()]
    tree = aggregate(key, rows)
    children = []
    for node, members in sorted(by_node.items()):
        if node == key:
            continue
        figures = aggregate(node, [r for r in rows if r["camera"] in members])
        children.append({k: v for k, v in figures.items() if k != "rows"} | {"final": final})
    children.sort(key=lambda c: (c["online_rate"] is None, c["online_rate"] or 0.0))
    listed = {**tree, "rows": tree["rows"][:MAX_LISTED]}
    return {
        **listed,
        "period": "week",
        "day": days[-1].isoformat(),
        "start_day": days[0].isoformat(),
        "days": found,
        "final": final and len(found) == len(days),
        "tree": listed,
        "children": children,
    }
