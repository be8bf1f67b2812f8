"""One inspection (巡检): per camera online time, recording completeness and faults of a day.

Pure computation over what the store keeps:

- **online time** from the ``camera_online`` / ``camera_offline`` events (the registry
  publishes one on every change; the cameras table keeps only the current status).
  The state at the start of the day is the last such event before it; a camera with
  no event yet counts as offline until its first one.
- **recording completeness** from the recorder's index: the union of segment times
  over the expected time (the whole day, up to now, for cameras whose policy records
  continuously); holes shorter than ``min_gap_s`` (segment joins) are not gaps. Each
  gap is listed with its reason: the recorder's own gap records, else "camera
  offline" when the camera was offline then, else "unknown".
- **diagnosis** states (``diagnosis`` events) that overlapped the day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from gateway.store import events as event_store
from gateway.store import recordings as rec_store
from gateway.store.db import Database

Interval = tuple[float, float]


def day_window(day: date, tz: ZoneInfo) -> Interval:
    """Unix seconds of local midnight to the next local midnight (23–25 h with DST)."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start.timestamp(), end.timestamp()


def union(intervals: Iterable[Interval], bridge: float = 0.0) -> list[Interval]:
    """Merge overlapping intervals (and ones closer than ``bridge`` seconds)."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1] + bridge:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def total(intervals: Iterable[Interval]) -> float:
    return sum(b - a for a, b in intervals)


def clip(intervals: Iterable[Interval], start: float, end: float) -> list[Interval]:
    return [(max(a, start), min(b, end)) for a, b in intervals if b > start and a < end]


def holes(covered: list[Interval], start: float, end: float) -> list[Interval]:
    """The parts of [start, end) not covered (``covered`` merged and sorted)."""
    out, t = [], start
    for a, b in covered:
        if a > t:
            out.append((t, a))
        t = max(t, b)
    if t < end:
        out.append((t, end))
    return out


def online_intervals(db: Database, camera: str, start: float, end: float) -> list[Interval]:
    """When the camera was online within [start, end), from its status events.

    The events table compares times as UTC ISO text: query with UTC datetimes.
    """
    until = datetime.fromtimestamp(end, UTC)
    changes: list[tuple[float, bool]] = []
    for kind, online in (("camera_online", True), ("camera_offline", False)):
        for ev in event_store.query(db, camera=camera, type=kind, until=until, limit=10_000):
            changes.append((ev.start.timestamp(), online))
    changes.sort()
    state, since, out = False, start, []
    for t, online in changes:
        if t <= start:
            state = online
            continue
        if state and not online:
            out.append((since, t))
        elif online and not state:
            since = t
        state = online
    if state:
        out.append((since, end))
    return clip(union(out), start, end)


def _diagnosis(db: Database, camera: str, start: float, end: float) -> list[dict[str, Any]]:
    out = []
    events = event_store.query(
        db,
        camera=camera,
        type="diagnosis",
        since=datetime.fromtimestamp(start, UTC),
        until=datetime.fromtimestamp(end, UTC),
        limit=1000,
    )
    for ev in sorted(events, key=lambda e: e.start):
        a = ev.start.timestamp()
        b = ev.end.timestamp() if ev.end is not None else end
        (a, b), = clip([(a, b)], start, end) or [(a, a)]  # fmt: skip
        out.append(
            {
                "kind": ev.data.get("kind", ""),
                "name": ev.data.get("name", ""),
                "start": a,
                "end": ev.end.timestamp() if ev.end is not None else None,
                "seconds": round(b - a, 1),
                "reason": ev.data.get("reason", ""),
                "reason_en": ev.data.get("reason_en", ""),
                "event_id": ev.id,
                "snapshot_url": ev.snapshot_url,
            }
        )
    return out


def recording(
    db: Database,
    camera: str,
    start: float,
    end: float,
    offline: list[Interval],
    min_gap_s: float,
) -> dict[str, Any]:
    """Recorded over expected seconds in [start, end), and the gaps with their reasons."""
    segs = rec_store.segments(db, camera, start, end)
    covered = union(clip(((s["start"], s["end"]) for s in segs), start, end), bridge=min_gap_s)
    known = rec_store.gaps(db, camera, start, end)
    gaps: list[dict[str, Any]] = []
    for a, b in holes(covered, start, end):
        if b - a < min_gap_s:
            continue  # a segment join at the day's edge
        reasons = sorted({g["reason"] for g in known if g["end"] > a and g["start"] < b} - {""})
        if not reasons and any(x < b and y > a for x, y in offline):
            reasons = ["camera_offline"]
        gaps.append(
            {
                "start": a,
                "end": b,
                "seconds": round(b - a, 1),
                "reason": ",".join(reasons) or "unknown",
            }
        )
    expected = end - start
    recorded = expected - sum(g["end"] - g["start"] for g in gaps)
    return {
        "expected_s": round(expected, 1),
        "recorded_s": round(recorded, 1),
        "percent": round(100 * recorded / expected, 3) if expected > 0 else None,
        "gaps": gaps,
    }


def inspect_camera(
    db: Database,
    camera: str,
    start: float,
    end: float,
    *,
    continuous: bool,
    min_gap_s: float = 2.0,
    name: str = "",
) -> dict[str, Any]:
    """One camera's figures for [start, end)."""
    online = online_intervals(db, camera, start, end)
    span = end - start
    online_s = total(online)
    offline = holes(online, start, end)
    diag = _diagnosis(db, camera, start, end)
    return {
        "camera": camera,
        "name": name,
        "online_s": round(online_s, 1),
        "online_percent": round(100 * online_s / span, 3) if span > 0 else None,
        "offline": [{"start": a, "end": b, "seconds": round(b - a, 1)} for a, b in offline],
        "recording": recording(db, camera, start, end, offline, min_gap_s) if continuous else None,
        "diagnosis": diag,
        "faults": sorted({d["kind"] for d in diag}),
    }


def worst_first(row: dict[str, Any]) -> tuple[float, float, int]:
    rec = row["recording"]
    completeness = rec["percent"] if rec and rec["percent"] is not None else 100.0
    return (row["online_percent"] or 0.0, completeness, -len(row["faults"]))


def aggregate(node: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Node figures: online rate over cameras, completeness over recorded time."""
    rows = sorted(rows, key=worst_first)
    online = [r["online_percent"] for r in rows if r["online_percent"] is not None]
    recs = [r["recording"] for r in rows if r["recording"]]
    expected = sum(r["expected_s"] for r in recs)
    return {
        "node": node,
        "cameras": len(rows),
        "online_rate": round(sum(online) / len(online), 3) if online else None,
        "recording_completeness": (
            round(100 * sum(r["recorded_s"] for r in recs) / expected, 3) if expected else None
        ),
        "cameras_with_faults": sum(1 for r in rows if r["faults"]),
        "rows": rows,
    }
