"""The ``export`` part (录像导出): background export jobs, their space, locks and files.

A job names cameras (local or anywhere below through the tree) and a span. It is
checked when created (span limit, the caller's area, unknown cameras) and then runs in
the background, one job at a time: for every camera the recorded runs are listed, each
run is cut into MP4 clips (remuxed by the gateway that records the camera), and the
clips, a signed manifest and a readme go into one ZIP. A camera whose footage cannot be
read (its child offline) is marked failed with the reason; the others finish.

Footage in an export's span is locked against retention (``rec_locks``, owner
``export:<gateway>/<id>``) where it is recorded: this gateway's cameras when the job is
accepted, a child's camera (through the tree, :func:`gateway.cascade.access.lock`) when the
job reaches it. Deleting the export releases the locks; a child offline then is retried.
Finished exports together stay under ``export.max_mb``; a clip that would not fit, or
that would push the recordings disk past its retention limits (so that footage would be
evicted to make room), fails its camera with a clear reason instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from gateway.cascade.local import Local
from gateway.cascade.tree import build
from gateway.config import ExportSettings
from gateway.core import Core
from gateway.export import bundle
from gateway.export.locks import ExportLocks
from gateway.export.readme import readme
from gateway.export.runner import run_job
from gateway.export.signing import KEY_FILE, SigningKey
from gateway.export.sources import iso
from gateway.store import exports as store

log = logging.getLogger(__name__)
SAVE_EVERY_S = 1.0
# What the manifest says of each camera.
CAMERA_KEYS: tuple[str, ...] = ("path", "name", "place", "state", "reason", "locked")
CAMERA_KEYS += ("lock_error", "requested_seconds", "recorded_seconds", "gaps", "files")
ACTIVE = ("queued", "running")


class ExportRefused(Exception):
    """A request that cannot become a job, with an HTTP-like status and a bilingual message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Exporter:
    """Creates, runs, lists and deletes evidence exports."""

    def __init__(self, core: Core, settings: ExportSettings, *, here: Local) -> None:
        self.core = core
        self.db = core.db
        self.here = here  # cameras here and below by path (gateway.cascade.access)
        self.settings = settings
        self.dir = core.data_dir / "exports"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = SigningKey(core.data_dir / KEY_FILE)
        self.locks = ExportLocks(core, here)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._unlocker: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        # A save of a job's progress (in a thread) and its deletion never interleave.
        self._guard = threading.Lock()
        self._last_save = 0.0
        self.jobs_done = 0
        self.jobs_failed = 0
        store.init(self.db)

    async def start(self) -> None:
        for job in store.all_jobs(self.db):
            if job["state"] in ACTIVE:  # the process stopped under it: say so, keep the locks
                job.update(state="failed", error="interrupted by a restart / 导出被网关重启中断")
                shutil.rmtree(self.work_dir(job["id"]), ignore_errors=True)
                store.save(self.db, job)
        self.sweep()
        self._worker = asyncio.create_task(self._work_loop(), name="export-worker")
        self._unlocker = asyncio.create_task(self.locks.retry_loop(), name="export-unlocks")

    async def stop(self) -> None:
        for task in (self._worker, self._unlocker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- files and space --------------------------------------------------------------------
    def work_dir(self, export_id: str) -> Path:
        return self.dir / export_id

    def zip_path(self, export_id: str) -> Path:
        return self.dir / f"{export_id}.zip"

    def used_bytes(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.dir):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.stat(os.path.join(root, name)).st_size
        return total

    def usage(self) -> dict[str, int]:
        return {"used_bytes": self.used_bytes(), "max_bytes": int(self.settings.max_mb * 1e6)}

    def room_for(self, needed: int) -> str | None:
        """Why ``needed`` more bytes cannot be written, or None."""
        if self.used_bytes() + needed > self.settings.max_mb * 1e6:
            return (
                f"export space full: {self.settings.max_mb:g} MB (export.max_mb); delete old"
                " exports or export a shorter span / 导出空间已满，请删除旧的导出"
            )
        rec = self.here.recorder
        if rec is not None and rec.retention.over_limit(needed):
            return (
                "the recordings disk is at its retention limits; exporting would evict footage"
                " / 磁盘空间不足，导出会覆盖录像"
            )
        return None

    # -- jobs -------------------------------------------------------------------------------
    def check(self, caller: Any, cameras: list[str], start: float, end: float) -> list[dict]:
        """Validate a request; the cameras as the tree knows them. Raises ExportRefused."""
        cameras = list(dict.fromkeys(c.strip().strip("/") for c in cameras if c.strip()))
        if not cameras:
            raise ExportRefused(400, "choose at least one camera / 请选择摄像机")
        if len(cameras) > self.settings.max_cameras:
            raise ExportRefused(
                400,
                f"{len(cameras)} cameras: at most {self.settings.max_cameras} in one export"
                f" (export.max_cameras) / 单次最多导出 {self.settings.max_cameras} 台摄像机",
            )
        if end <= start:
            raise ExportRefused(400, "end must be after start / 结束时间须晚于开始时间")
        if start > time.time():
            raise ExportRefused(400, "the span lies in the future / 所选时段尚未到来")
        limit_h = self.settings.max_span_hours
        if end - start > limit_h * 3600:
            raise ExportRefused(
                400,
                f"span of {(end - start) / 3600:.1f} h is longer than the limit of {limit_h:g} h"
                f" (export.max_span_hours) / 导出时段过长，单次最长 {limit_h:g} 小时",
            )
        tree = build(self.here)
        found = []
        for path in cameras:
            if not caller.sees(path):
                raise ExportRefused(
                    403, f"camera {path!r} is outside your area / 摄像机 {path} 不在您的管辖范围内"
                )
            hit = _find(tree, path)
            if hit is None:
                raise ExportRefused(404, f"unknown camera {path!r} / 未知摄像机 {path}")
            cam, place = hit
            found.append({"path": path, "name": cam.name, "place": place})
        return found

    async def create(
        self, caller: Any, cameras: list[str], start: float, end: float, title: str, client: str
    ) -> dict[str, Any]:
        found = self.check(caller, cameras, start, end)
        end = min(end, time.time())
        export_id = "ex-" + secrets.token_hex(6)
        job: dict[str, Any] = {
            "id": export_id,
            "title": title,
            "user": caller.name,
            "role": caller.role,
            "scope": caller.scope,
            "client": client,
            "created": time.time(),
            "start": iso(start),
            "end": iso(end),
            "state": "queued",
            "progress": 0.0,
            "error": None,
            "cameras": [
                {
                    **cam,
                    "state": "pending",
                    "reason": None,
                    "requested_seconds": round(end - start, 3),
                    "recorded_seconds": 0.0,
                    "gaps": [],
                    "files": [],
                }
                for cam in found
            ],
        }
        await asyncio.to_thread(self.locks.lock_local, job, start, end)
        await asyncio.to_thread(store.save, self.db, job)
        self._queue.put_nowait(export_id)
        return job

    def get(self, export_id: str) -> dict[str, Any] | None:
        return store.get(self.db, export_id)

    def list(self) -> list[dict[str, Any]]:
        return store.all_jobs(self.db)

    async def delete(self, export_id: str) -> bool:
        job = await asyncio.to_thread(store.get, self.db, export_id)
        if job is None:
            return False
        self._cancelled.add(export_id)
        task = self._running.get(export_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.to_thread(self._remove, export_id)
        await self.locks.release(job)
        return True

    def _remove(self, export_id: str) -> None:
        with self._guard:
            store.delete(self.db, export_id)
        shutil.rmtree(self.work_dir(export_id), ignore_errors=True)
        self.zip_path(export_id).unlink(missing_ok=True)
        self.zip_path(export_id).with_suffix(".part").unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove files of exports that no longer exist (a clip still being cut when its
        export was deleted, a crash mid-job); returns how many went. Blocking."""
        keep = {j["id"] for j in store.all_jobs(self.db)}
        active = {j["id"] for j in store.all_jobs(self.db) if j["state"] in ACTIVE}
        removed = 0
        for entry in self.dir.iterdir():
            export_id = entry.name.split(".")[0]
            is_zip = entry.suffix == ".zip" and export_id in keep
            if is_zip or (entry.is_dir() and export_id in active):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        return removed

    async def _work_loop(self) -> None:
        while True:
            export_id = await self._queue.get()
            if export_id in self._cancelled:
                continue
            task = asyncio.create_task(self._run(export_id), name=f"export-{export_id}")
            self._running[export_id] = task
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # the worker itself is stopping
            except Exception:
                self.jobs_failed += 1
                log.exception("export %s failed", export_id)
                with contextlib.suppress(Exception):
                    await self._fail(export_id, "internal error; see the gateway log / 内部错误")
            finally:
                self._running.pop(export_id, None)
            if export_id in self._cancelled:  # its last clip may have landed after the delete
                await asyncio.to_thread(self.sweep)

    async def _fail(self, export_id: str, reason: str) -> None:
        job = await asyncio.to_thread(store.get, self.db, export_id)
        if job is not None:
            job.update(state="failed", error=reason)
            await self.save(job, force=True)

    async def save(self, job: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_save >= SAVE_EVERY_S:
            self._last_save = now
            await asyncio.to_thread(self._save_sync, job)

    def _save_sync(self, job: dict[str, Any]) -> None:
        with self._guard:
            if job["id"] not in self._cancelled:
                store.save(self.db, job)

    async def _run(self, export_id: str) -> None:
        job = await asyncio.to_thread(store.get, self.db, export_id)
        if job is None:
            return
        job["state"] = "running"
        await self.save(job, force=True)
        await run_job(self, job)
        if job["state"] in ("done", "partial"):
            self.jobs_done += 1
        else:
            self.jobs_failed += 1
        job["finished"] = time.time()
        await self.save(job, force=True)
        log.info("export %s by %s: %s (%s)", export_id, job["user"], job["state"], job["error"])

    def write_zip(self, job: dict[str, Any], files: dict[str, Path]) -> None:
        """The ZIP of a finished job (blocking), with its size and SHA-256 in ``job``."""
        cascade = self.core.settings.cascade
        gw_info = {
            "id": cascade.id,
            "path": self.core.path,
            "name": cascade.name,
            "level": cascade.level,
        }
        job["gateway"] = gw_info
        job["exported_at"] = iso(time.time())
        manifest = {
            "export_id": job["id"],
            "title": job["title"],
            "gateway": gw_info,
            "exported_by": {"user": job["user"], "role": job["role"], "client": job["client"]},
            "exported_at": job["exported_at"],
            "requested": {"start": job["start"], "end": job["end"]},
            "cameras": [{k: cam.get(k) for k in CAMERA_KEYS} for cam in job["cameras"]],
        }
        out = self.zip_path(job["id"])
        bundle.write_zip(out, manifest, files, readme(job, self.key.fingerprint), self.key)
        job["bytes"] = out.stat().st_size
        job["sha256"] = bundle.sha256_file(out)


def _find(tree: Any, path: str) -> tuple[Any, str] | None:
    """(camera node, the name of the gateway that has it) for ``path``, or None."""
    for cam in tree.cameras:
        if cam.path == path:
            return cam, tree.name or tree.id
    for child in tree.children:
        if path.startswith(child.path + "/"):
            return _find(child, path)
    return None
