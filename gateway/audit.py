"""The ``audit`` part (操作日志): every part that acts for a person records it here.

Logins (and failed ones), live viewing (from when to when, local and through the
tree), PTZ, alarm acknowledgements, plan launches, clip downloads and changes to
cameras, users and settings are appended through :meth:`Audit.record`. The part is
handed to the parts that need it (``gateway.app``); the API reads it back with the
caller's reach applied: an admin sees everything in its subtree, anyone else only
their own entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gateway.config import AuditSettings
from gateway.store import audit as store
from gateway.store.audit import AuditEntry, AuditQuery
from gateway.store.db import Database

log = logging.getLogger(__name__)

# What the log records; the API and the page offer these as the action filter.
ACTIONS: dict[str, str] = {
    "login": "登录 / login",
    "login_failed": "登录失败 / failed login",
    "logout": "退出 / logout",
    "view": "实时预览 / live view",
    "view_end": "结束预览 / live view ended",
    "ptz": "云台控制 / PTZ",
    "alarm_ack": "报警确认 / alarm acknowledged",
    "clip_download": "录像下载 / clip download",
    "plan_launch": "启动预案 / plan launched",
    "plan_change": "修改预案 / plan changed",
    "camera_change": "修改摄像机 / camera changed",
    "user_change": "修改用户 / user changed",
    "settings_change": "修改设置 / settings changed",
    "export": "录像导出 / evidence export",
    "tour_change": "修改轮巡 / tour changed",
    "map_change": "修改电子地图 / e-map changed",
    "inspection_run": "按需巡检 / inspection on demand",
}
PURGE_PERIOD_S = 3600.0
MAX_TEXT = 200


def _clip(text: str) -> str:
    return text[:MAX_TEXT]


class Audit:
    """Append-only audit log of one gateway, with retention."""

    def __init__(self, db: Database, settings: AuditSettings) -> None:
        self.db = db
        self.settings = settings
        self.recorded = 0
        self.errors = 0
        self._task: asyncio.Task[None] | None = None
        store.init(db)

    async def start(self) -> None:
        self.purge()
        self._task = asyncio.create_task(self._purge_loop(), name="audit-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def record(
        self,
        user: str,
        action: str,
        *,
        camera: str = "",
        client: str = "",
        ok: bool = True,
        ts: float | None = None,
        **detail: Any,
    ) -> int:
        """Append one entry; never raises (an audit failure must not fail the action)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        entry = AuditEntry(
            ts=time.time() if ts is None else ts,
            user=_clip(user) or "?",
            action=action,
            camera=_clip(camera),
            client=_clip(client),
            ok=ok,
            detail={k: v for k, v in detail.items() if v is not None},
        )
        try:
            ident = store.append(self.db, entry)
        except Exception:
            self.errors += 1
            log.exception("audit: could not record %s by %s", action, entry.user)
            return 0
        self.recorded += 1
        return ident

    def search(self, query: AuditQuery) -> list[AuditEntry]:
        return store.search(self.db, query)

    def verify(self) -> tuple[int, int | None]:
        return store.verify(self.db)

    def purge(self) -> int:
        cutoff = time.time() - self.settings.retention_days * 86400
        removed = store.purge_before(self.db, cutoff)
        if removed:
            log.info(
                "audit: %d entries older than %g days removed",
                removed,
                self.settings.retention_days,
            )
        return removed

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(PURGE_PERIOD_S)
            try:
                await asyncio.to_thread(self.purge)
            except Exception:
                log.exception("audit: retention failed")
