"""One export job from start to ZIP: list each camera's runs, fetch its clips, then bundle."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

from gateway.cascade.local import Local
from gateway.export import sources
from gateway.export.locks import ExportLocks
from gateway.export.sources import iso

log = logging.getLogger(__name__)

NOTHING = "nothing recorded in the span / 该时段无录像"
# Share of the progress bar given to fetching clips; hashing and zipping take the rest.
FETCH_SHARE = 0.9


class Exporting(Protocol):
    """What a job needs of the exporter (``gateway.export.service.Exporter``, which
    imports this module: naming the class here would close an import circle)."""

    here: Local
    locks: ExportLocks

    def work_dir(self, export_id: str) -> Path: ...

    async def save(self, job: dict[str, Any], force: bool = False) -> None: ...

    def room_for(self, needed: int) -> str | None: ...

    def write_zip(self, job: dict[str, Any], files: dict[str, Path]) -> None: ...


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


async def run_job(exporter: Exporting, job: dict[str, Any]) -> None:
    """Fill ``job`` (cameras' states, gaps, files, the ZIP) as the export runs."""
    t0, t1 = _ts(job["start"]), _ts(job["end"])
    work = exporter.work_dir(job["id"])
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    share = FETCH_SHARE / max(1, len(job["cameras"]))
    for n, cam in enumerate(job["cameras"]):
        base = n * share
        cam["state"] = "running"
        job["progress"] = round(base, 4)
        await exporter.save(job, force=True)
        try:
            await _camera(exporter, job, cam, (t0, t1), work, files, (base, share))
        except sources.SourceError as err:
            cam.update(state="failed", reason=str(err))
            log.warning("export %s: camera %s failed: %s", job["id"], cam["path"], err)
        except Exception as err:  # one camera's surprise must not sink the others
            log.exception("export %s: camera %s failed", job["id"], cam["path"])
            cam.update(state="failed", reason=f"internal error ({type(err).__name__}) / 内部错误")
    if not files:
        shutil.rmtree(work, ignore_errors=True)
        states = {c["state"] for c in job["cameras"]}
        job["state"] = "empty" if states == {"empty"} else "failed"
        reasons = sorted({c["reason"] for c in job["cameras"] if c["reason"]})
        job["error"] = NOTHING if job["state"] == "empty" else "; ".join(reasons)
        return
    try:
        await asyncio.to_thread(exporter.write_zip, job, files)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [c["path"] for c in job["cameras"] if c["state"] == "failed"]
    job["state"] = "partial" if failed else "done"
    job["error"] = f"failed: {', '.join(failed)} / 部分摄像机失败" if failed else None
    job["progress"] = 1.0


async def _camera(
    exporter: Exporting,
    job: dict[str, Any],
    cam: dict[str, Any],
    span: tuple[float, float],
    work: Path,
    files: dict[str, Path],
    bar: tuple[float, float],
) -> None:
    """Export one camera's footage in ``span``. Raises :class:`sources.SourceError`."""
    here = exporter.here
    t0, t1 = span
    base, share = bar
    if "/" in cam["path"]:
        await exporter.locks.lock_remote(job, cam, t0, t1)
    runs = await sources.recorded_runs(here, cam["path"], t0, t1)
    cam["recorded_seconds"] = round(sum(r.seconds for r in runs), 3)
    cam["gaps"] = [
        {"start": iso(a), "end": iso(b), "seconds": round(b - a, 3)}
        for a, b in sources.gaps_of(runs, t0, t1)
    ]
    if not runs:
        cam.update(state="empty", reason=NOTHING)
        return
    total = sum(r.seconds for r in runs) or 1.0
    done = 0.0
    cam["state"] = "done"
    for piece in [p for r in runs for p in sources.pieces(r)]:
        why = await asyncio.to_thread(exporter.room_for, piece.bytes)
        if why is not None:
            cam.update(state="failed", reason=why)
            return
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(piece.start))
        name = f"clips/{cam['path']}/{len(cam['files']) + 1:03d}-{stamp}.mp4"
        size = await sources.fetch_clip(here, cam["path"], piece, work / name)
        files[name] = work / name
        cam["files"].append(
            {"name": name, "start": iso(piece.start), "end": iso(piece.end), "bytes": size}
        )
        done += piece.seconds
        job["progress"] = round(base + share * done / total, 4)
        await exporter.save(job)
