"""The GB/T 28181 up-link part: one :class:`UpstreamClient` per upper platform.

Platforms come from ``gb28181.upstream`` in the config; the API adds, changes and
removes them at run time, and those changes are kept in
``data_dir/gb28181_upstreams.json`` (mode 0600: it holds passwords) as overrides by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.cascade.protocol import GatewayNode
from gateway.config import Gb28181Settings, GbUpstream
from gateway.events.bus import EventBus
from gateway.gb28181.alarms import AlarmForwarder
from gateway.gb28181.changes import ChangeWatcher
from gateway.gb28181.channels import ChannelDirectory
from gateway.gb28181.control import CameraControl
from gateway.gb28181.media_api import MediaBackend
from gateway.gb28181.records import RecordSource
from gateway.gb28181.upstream import UpstreamClient
from gateway.store.db import Database

log = logging.getLogger(__name__)


class UpstreamError(ValueError):
    """A bad API change; ``str()`` is the HTTP error detail."""


def id_prefix(cfg: GbUpstream) -> str:
    """The 8-digit centre code channel ids are made under: the civil code, else the device's."""
    return cfg.civil_code.ljust(8, "0") if cfg.civil_code else cfg.device_id[:8]


class Gb28181Part:
    """Owns the upstream clients; ``media`` is the PS backend (None: INVITEs get 488)."""

    def __init__(
        self,
        settings: Gb28181Settings,
        *,
        db: Database,
        tree: Callable[[], GatewayNode],
        media: MediaBackend | None,
        overrides_path: Path | None = None,
        backoff_s: float = 1.0,
        records: RecordSource | None = None,
        cameras: CameraControl | None = None,
        bus: EventBus | None = None,
        changes_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.records = records  # RecordInfo and Playback/Download (None: refused)
        self.db = db
        self.tree = tree
        self.media = media
        self.backoff_s = backoff_s
        self.overrides_path = overrides_path
        self.configs: dict[str, GbUpstream] = {u.id: u for u in settings.upstream}
        self._overrides: dict[str, dict[str, Any] | None] = self._load_overrides()
        for uid, raw in self._overrides.items():
            if raw is None:
                self.configs.pop(uid, None)
                continue
            try:
                self.configs[uid] = GbUpstream.model_validate(raw)
            except ValidationError as err:
                log.error("gb28181: stored upstream %s is invalid, ignored: %s", uid, err)
        self.clients: dict[str, UpstreamClient] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._hangups: set[asyncio.Task[bool]] = set()
        # The PS backend reports streams that end by themselves; their dialogs get a BYE.
        if media is not None and media.on_ended is None:
            media.on_ended = self.media_ended
        self.cameras, self.bus = cameras, bus  # PTZ for DeviceControl; events for alarms
        self.changes = ChangeWatcher(lambda: self.clients, changes_s)
        self.alarms = AlarmForwarder(lambda: self.clients)

    def media_ended(self, call_id: str, reason: str) -> None:
        """``on_ended`` of the media backend: the dialog's client hangs up (a BYE)."""
        for client in list(self.clients.values()):
            if call_id in client.calls.dialogs:
                task = asyncio.ensure_future(client.calls.media_ended(call_id, reason))
                self._hangups.add(task)
                task.add_done_callback(self._hangups.discard)
                return

    def _client(self, cfg: GbUpstream) -> UpstreamClient:
        directory = self._client_directory(cfg)
        return UpstreamClient(
            cfg,
            directory=directory,
            media=self.media,
            t1=self.settings.sip_t1_s,
            backoff_s=self.backoff_s,
            records=self.records,
            cameras=self.cameras,
        )

    async def start(self) -> None:
        self._started = True
        self.changes.start()
        self.alarms.start()
        if self.bus is not None:
            self.bus.add_listener(self.alarms.on_event)
        for cfg in self.configs.values():
            if cfg.enabled:
                await self._start_client(cfg)

    async def _start_client(self, cfg: GbUpstream) -> None:
        client = self._client(cfg)
        try:
            await client.start()
        except OSError as err:
            client.state, client.last_error = "offline", f"cannot open the SIP socket: {err}"
            log.error("gb28181 %s: %s", cfg.id, client.last_error)
        self.clients[cfg.id] = client

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*self._hangups, return_exceptions=True)  # BYEs under way
        if self.bus is not None:
            self.bus.remove_listener(self.alarms.on_event)
        await self.changes.stop()
        await self.alarms.stop()
        clients, self.clients = list(self.clients.values()), {}
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)

    # -- what the API uses -----------------------------------------------------------

    def describe(self, uid: str) -> dict[str, Any]:
        cfg = self.configs[uid]
        public = cfg.model_dump(mode="json", exclude={"password"})
        public["password_set"] = bool(cfg.password.get_secret_value())
        client = self.clients.get(uid)
        public["status"] = client.status() if client else {"id": uid, "state": "disabled"}
        public["status"]["alarms_held"] = self.alarms.held(uid)
        return public

    def channels(self, uid: str) -> list[dict[str, Any]]:
        """What this platform is shown: each channel's GB id, kind, name, parent and camera
        (so an operator can tell which 20-digit id is which camera)."""
        cfg = self.configs[uid]
        client = self.clients.get(uid)
        directory = client.directory if client else self._client_directory(cfg)
        return [
            {
                "gb_id": c.gb_id,
                "kind": c.kind,
                "name": c.name,
                "parent_id": c.parent_id,
                "camera": c.camera_path,
                "online": c.online,
            }
            for c in directory.channels()
        ]

    def _client_directory(self, cfg: GbUpstream) -> ChannelDirectory:
        return ChannelDirectory(self.db, self.tree, id_prefix(cfg), cfg.share)

    def list_all(self) -> list[dict[str, Any]]:
        return [self.describe(uid) for uid in self.configs]

    async def add(self, raw: dict[str, Any]) -> dict[str, Any]:
        cfg = _validate(raw)
        async with self._lock:
            if cfg.id in self.configs:
                raise UpstreamError(f"upstream {cfg.id!r} exists already")
            await self._apply(cfg)
        return self.describe(cfg.id)

    async def update(self, uid: str, changes: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            current = self.configs.get(uid)
            if current is None:
                raise KeyError(uid)
            if changes.get("id", uid) != uid:
                raise UpstreamError("id cannot be changed")
            merged = current.model_dump() | changes
            await self._apply(_validate(merged))
        return self.describe(uid)

    async def remove(self, uid: str) -> None:
        async with self._lock:
            if uid not in self.configs:
                raise KeyError(uid)
            del self.configs[uid]
            client = self.clients.pop(uid, None)
            self._overrides[uid] = None
            self._save_overrides()
            if client is not None:
                await client.stop()

    async def _apply(self, cfg: GbUpstream) -> None:
        old = self.clients.pop(cfg.id, None)
        if old is not None:
            await old.stop()
        self.configs[cfg.id] = cfg
        raw = cfg.model_dump(mode="json")
        raw["password"] = cfg.password.get_secret_value()
        self._overrides[cfg.id] = raw
        self._save_overrides()
        if self._started and cfg.enabled:
            await self._start_client(cfg)

    # -- overrides file --------------------------------------------------------------

    def _load_overrides(self) -> dict[str, dict[str, Any] | None]:
        if self.overrides_path is None or not self.overrides_path.exists():
            return {}
        try:
            data = json.loads(self.overrides_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.error("gb28181: cannot read %s, ignored: %s", self.overrides_path, err)
            return {}
        ups = data.get("upstream") if isinstance(data, dict) else None
        return ups if isinstance(ups, dict) else {}

    def _save_overrides(self) -> None:
        if self.overrides_path is None:
            return
        tmp = self.overrides_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"upstream": self._overrides}, f, ensure_ascii=False)
        os.replace(tmp, self.overrides_path)
        with contextlib.suppress(OSError):
            os.chmod(self.overrides_path, 0o600)


def _validate(raw: dict[str, Any]) -> GbUpstream:
    # What GET returns may be sent back as it is: the read-only keys are dropped.
    raw = {k: v for k, v in raw.items() if k not in ("status", "password_set")}
    try:
        return GbUpstream.model_validate(raw)
    except ValidationError as err:
        parts = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"]) or "(body)"
            parts.append(f"{path}: {e['msg']}")
        raise UpstreamError("; ".join(parts)) from None
