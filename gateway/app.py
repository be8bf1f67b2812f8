"""Builds the service: wires the parts together and owns start and stop.

``Gateway`` knows nothing of HTTP; ``gateway.api.server`` puts FastAPI on top of it.
Each part is an attribute with ``async start()`` / ``async stop()``; parts are
started in the order listed and stopped in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from gateway.config import Settings
from gateway.events.bus import EventBus
from gateway.store.db import Database

log = logging.getLogger(__name__)


class Part(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Gateway:
    """One gateway process: settings, storage, the event bus and every part."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.data_dir / "gateway.db")
        self.bus = EventBus(self.db)
        self.loop: asyncio.AbstractEventLoop | None = None
        # Parts, filled in by _build(); each is optional so a part can be absent
        # while it is being developed or when configuration turns it off.
        self.parts: dict[str, Part] = {}
        self.extras: dict[str, Any] = {}
        self._build()

    @property
    def path(self) -> str:
        """This gateway's id; the cascade makes it a full path (city/town-a)."""
        return self.settings.cascade.id

    def _build(self) -> None:
        """Create the parts. Each part's module is imported here, never the reverse."""
        for name, factory in _factories():
            try:
                part = factory(self)
            except Exception:
                log.exception("could not build part %s", name)
                raise
            if part is not None:
                self.parts[name] = part
                setattr(self, name, part)

    def part(self, name: str) -> Any:
        return self.parts.get(name)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for name, part in self.parts.items():
            log.info("starting %s", name)
            await part.start()

    async def stop(self) -> None:
        for name, part in reversed(list(self.parts.items())):
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", name)
        self.db.close()


def _factories() -> list[tuple[str, Any]]:
    """(name, factory(gateway) -> part | None) in start order (stopped in reverse).

    Imported here, not at the top, so that parts import this module and never the
    reverse. A factory returns None when configuration turns its part off.
    """
    from gateway.audit import build as build_audit
    from gateway.auth.service import build as build_auth
    from gateway.cameras.rediscovery import create as build_discovery
    from gateway.cameras.registry import create as build_registry
    from gateway.cascade.part import build as build_cascade
    from gateway.events.linkage import build as build_linkage
    from gateway.events.mqtt import build as build_mqtt
    from gateway.motion.service import build as build_motion
    from gateway.plans.service import build as build_plans
    from gateway.recorder.service import create as build_recorder
    from gateway.relay.sessions import build as build_relay
    from gateway.streams.manager import build as build_streams
    from gateway.tours import build as build_tours

    return [
        ("auth", build_auth),
        ("audit", build_audit),  # before the parts that record into it (relay, plans)
        ("registry", build_registry),  # before streams: they read its URLs
        ("streams", build_streams),
        ("relay", build_relay),  # leases hubs per viewer
        ("motion", build_motion),  # leases each camera's sub-stream
        ("recorder", build_recorder),  # before linkage, which asks it to record
        ("plans", build_plans),  # before linkage, whose rules may launch plans
        ("linkage", build_linkage),
        ("tours", build_tours),  # kept here, run by the operators' pages
        ("cascade", build_cascade),  # registers a resolver with streams
        ("discovery", build_discovery),  # after registry: marks cameras seen
        ("mqtt", build_mqtt),  # last: it only listens to the bus
    ]
