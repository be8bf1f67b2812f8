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


class StartupFailed(RuntimeError):
    """A part failed to start; the parts started before it have been stopped again."""


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
        # Part name -> built | starting | running | failed | stopping | stopped (for health).
        self.states: dict[str, str] = {}
        self.failure: str | None = None
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
                self.states[name] = "built"
                setattr(self, name, part)

    def part(self, name: str) -> Any:
        return self.parts.get(name)

    async def start(self) -> None:
        """Start the parts in order; if one fails, stop those already started and raise.

        A half-started gateway (say recording without its database, or streams without
        the registry) would report itself healthy while unable to do its job, so a
        failure is all or nothing: :class:`StartupFailed` names the part and the reason.
        """
        self.loop = asyncio.get_running_loop()
        for name, part in self.parts.items():
            log.info("starting %s", name)
            self.states[name] = "starting"
            try:
                await part.start()
            except Exception as err:
                self.states[name] = "failed"
                self.failure = f"part {name!r} failed to start: {type(err).__name__}: {err}"
                log.exception("part %s failed to start; stopping the parts already started", name)
                await self._stop_parts()
                raise StartupFailed(self.failure) from err
            self.states[name] = "running"

    async def stop(self) -> None:
        await self._stop_parts()
        self.db.close()

    async def _stop_parts(self) -> None:
        """Stop, in reverse order, every part that started (or was starting)."""
        for name, part in reversed(list(self.parts.items())):
            if self.states.get(name) not in ("starting", "running"):
                continue
            self.states[name] = "stopping"
            try:
                await part.stop()
                self.states[name] = "stopped"
            except Exception:
                self.states[name] = "failed"
                log.exception("stopping %s failed", name)


def _factories() -> list[tuple[str, Any]]:
    """(name, factory(gateway) -> part | None) in start order (stopped in reverse).

    Imported here, not at the top, so that parts import this module and never the
    reverse. A factory returns None when configuration turns its part off.
    """
    from gateway.audit import build as build_audit
    from gateway.auth.service import build as build_auth
    from gateway.cameras.camera_events import build as build_camera_events
    from gateway.cameras.rediscovery import create as build_discovery
    from gateway.cameras.registry import create as build_registry
    from gateway.cascade.part import build as build_cascade
    from gateway.diagnosis.service import build as build_diagnosis
    from gateway.events.linkage import build as build_linkage
    from gateway.events.mqtt import build as build_mqtt
    from gateway.gb28181.part import build as build_gb28181
    from gateway.gb28181.ps.backend import build as build_ps_backend
    from gateway.looplag import build as build_looplag
    from gateway.motion.service import build as build_motion
    from gateway.plans.service import build as build_plans
    from gateway.recorder.service import create as build_recorder
    from gateway.relay.sessions import build as build_relay
    from gateway.relay.sfu.relay import build as build_sfu
    from gateway.relay.sfu.whip import build as build_whip_out
    from gateway.reports.service import build as build_reports
    from gateway.streams.manager import build as build_streams
    from gateway.tours import build as build_tours

    return [
        ("looplag", build_looplag),  # first: it watches the loop the others share
        ("auth", build_auth),
        ("audit", build_audit),  # before the parts that record into it (relay, plans)
        ("registry", build_registry),  # before streams: they read its URLs
        ("streams", build_streams),
        ("relay", build_relay),  # leases hubs per viewer
        ("sfu", build_sfu),  # only with relay.sfu: viewers through Janus, the relay as fallback
        ("whip_out", build_whip_out),  # only with relay.whip_out: cameras published over WHIP
        ("diagnosis", build_diagnosis),  # before motion: taps its workers' frames
        ("motion", build_motion),  # leases each camera's sub-stream
        ("camera_events", build_camera_events),  # the cameras' own ONVIF alarms (PullPoint)
        ("recorder", build_recorder),  # before linkage, which asks it to record
        ("reports", build_reports),  # reads the recorder's index and the status events
        ("plans", build_plans),  # before linkage, whose rules may launch plans
        ("linkage", build_linkage),
        ("tours", build_tours),  # kept here, run by the operators' pages
        ("cascade", build_cascade),  # registers a resolver with streams
        ("discovery", build_discovery),  # after registry: marks cameras seen
        # PS/RTP sender for GB/T 28181 platforms, only with gb28181 configured
        ("gb28181_media", lambda gw: build_ps_backend(gw) if gw.settings.gb28181 else None),
        ("gb28181", build_gb28181),  # after cascade: its catalog is the merged tree
        ("mqtt", build_mqtt),  # last: it only listens to the bus
    ]
