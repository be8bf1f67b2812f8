"""Catalog changes (目录变化): the tree is compared with what each platform last saw, every
``interval_s``; each difference becomes an item with an ``Event`` (GB/T 28181-2016 A.2.5.5):
ON / OFF (a camera's status), VLOST (reachable but its video failed), ADD / DEL (a
channel or folder appeared or went), UPDATE (name, parent, address or PTZ changed). The
items reach the platform as a catalog NOTIFY where it subscribed, else as a Catalog
MESSAGE (:meth:`Subscriptions.deliver`).

Polling the tree (which the cascade keeps current from the children's reports) instead of
listening to every status source keeps one rule for local cameras and for cameras any
number of levels down. A platform that is not online gets nothing; it asks for the
catalog again when it registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from gateway.config import GbUpstream
from gateway.gb28181 import manscdp
from gateway.gb28181.channels import Channel, ChannelDirectory
from gateway.gb28181.sip.agent import SipTimeout
from gateway.gb28181.subscriptions import Subscriptions

log = logging.getLogger(__name__)
MAX_ITEMS = 20  # items per NOTIFY/MESSAGE: well inside one UDP datagram


class Client(Protocol):
    """What of an :class:`UpstreamClient` the watcher uses."""

    cfg: GbUpstream
    directory: ChannelDirectory
    subscriptions: Subscriptions
    state: str

    def next_sn(self) -> int: ...


def status_event(ch: Channel) -> str:
    if ch.status == "error":
        return "VLOST"
    return "ON" if ch.online else "OFF"


def diff(old: dict[str, Channel], new: dict[str, Channel]) -> list[tuple[Channel, str]]:
    """The catalog events that turn ``old`` into ``new`` (both by GB id)."""
    out: list[tuple[Channel, str]] = []
    for gb_id, ch in new.items():
        before = old.get(gb_id)
        if before is None:
            out.append((ch, "ADD"))
            continue
        if ch.kind == "camera" and status_event(ch) != status_event(before):
            out.append((ch, status_event(ch)))
        if (ch.name, ch.parent_id, ch.address, ch.ptz) != (
            before.name,
            before.parent_id,
            before.address,
            before.ptz,
        ):
            out.append((ch, "UPDATE"))
    out += [(ch, "DEL") for gb_id, ch in old.items() if gb_id not in new]
    return out


def item(ch: Channel, event: str, civil_code: str) -> list[tuple[str, object]]:
    if event in ("DEL", "OFF", "ON", "VLOST"):
        return [("DeviceID", ch.gb_id), ("Event", event)]
    return [*ch.catalog_fields(civil_code), ("Event", event)]


class ChangeWatcher:
    """One task for all platforms: ``clients()`` gives the current ones by id."""

    def __init__(
        self, clients: Callable[[], Mapping[str, Client]], interval_s: float = 1.0
    ) -> None:
        self.clients = clients
        self.interval_s = interval_s
        self.sent = 0  # items delivered
        self._seen: dict[int, dict[str, Channel]] = {}  # by id(client): replaced clients start over
        self._task: asyncio.Task[None] | None = None
        self._busy: dict[int, asyncio.Task[None]] = {}  # the running check of each platform

    def watching(self, client: Client) -> bool:
        """Whether ``client`` has a baseline (a change from now on will be reported)."""
        return id(client) in self._seen

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gb28181-catalog-changes")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._busy.values()) if t is not None]
        self._task, self._busy = None, {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            clients = list(self.clients().values())
            alive = {id(c) for c in clients}
            self._seen = {k: v for k, v in self._seen.items() if k in alive}
            self._busy = {k: t for k, t in self._busy.items() if k in alive and not t.done()}
            for client in clients:
                # One task per platform: a platform that does not answer (Timer F) delays
                # only its own notifications; it is compared again once that one ends.
                if id(client) not in self._busy:
                    self._busy[id(client)] = asyncio.create_task(self._check_logged(client))

    async def _check_logged(self, client: Client) -> None:
        try:
            await self.check(client)
        except Exception:
            log.exception("gb28181 %s: catalog change check failed", client.cfg.id)

    async def check(self, client: Client) -> int:
        """Compare once and deliver; returns the number of items sent."""
        channels = await asyncio.to_thread(client.directory.channels)
        now = {c.gb_id: c for c in channels}
        before = self._seen.get(id(client))
        self._seen[id(client)] = now
        if before is None or client.state != "online":
            return 0
        events = diff(before, now)
        if not events:
            return 0
        cfg = client.cfg
        civil = cfg.civil_code or cfg.device_id[:6]
        sent = 0
        for start in range(0, len(events), MAX_ITEMS):
            chunk = events[start : start + MAX_ITEMS]
            body = manscdp.render(
                "Notify",
                [
                    ("CmdType", "Catalog"),
                    ("SN", client.next_sn()),
                    ("DeviceID", cfg.device_id),
                    ("SumNum", len(events)),
                    ("DeviceList", [item(ch, ev, civil) for ch, ev in chunk]),
                ],
                cfg.charset,
            )
            try:
                ok = await client.subscriptions.deliver("Catalog", body)
            except (SipTimeout, OSError) as err:
                log.info("gb28181 %s: catalog change not delivered: %s", cfg.id, err)
                ok = False
            if ok:
                sent += len(chunk)
        self.sent += sent
        log.info(
            "gb28181 %s: catalog changes %s",
            cfg.id,
            ", ".join(f"{ch.name} {ev}" for ch, ev in events[:5]),
        )
        return sent
