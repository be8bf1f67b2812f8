"""Builds the service: wires the parts together and owns start and stop.

``Gateway`` knows nothing of HTTP; ``gateway.api.server`` puts FastAPI on top of it.
Each part is an attribute with ``async start()`` / ``async stop()``; parts are
started in the order listed and stopped in reverse.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.audit import Audit
from gateway.auth.service import AuthService
from gateway.cameras.camera_events import build as build_camera_events
from gateway.cameras.rediscovery import create as build_discovery
from gateway.cameras.registry import create as build_registry
from gateway.cascade import access
from gateway.cascade.part import build as build_cascade
from gateway.config import Settings
from gateway.diagnosis.service import build as build_diagnosis
from gateway.events.bus import EventBus
from gateway.events.linkage import Linkage
from gateway.events.mqtt import MqttNotifier
from gateway.export.service import build as build_export
from gateway.gb28181.part import build as build_gb28181
from gateway.gb28181.ps.backend import build as build_ps_backend
from gateway.looplag import LoopLag
from gateway.maps.service import Maps
from gateway.motion.service import build as build_motion
from gateway.plans.service import Plans
from gateway.recorder.service import create as build_recorder
from gateway.relay.sessions import build as build_relay
from gateway.relay.sfu.relay import build as build_sfu
from gateway.relay.sfu.whip import build as build_whip_out
from gateway.reports.service import ReportService, continuous_cameras, local_cameras
from gateway.store.db import Database
from gateway.streams.manager import build as build_streams
from gateway.tours import Tours

log = logging.getLogger(__name__)


class Part(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


P = TypeVar("P", bound="Part | None")


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
        """Create the parts in start order (stopped in reverse), each handed its neighbours.

        A part that configuration turns off is ``None``; its neighbours' types say so.
        """
        s = self.settings
        self.looplag = self.add("looplag", LoopLag())  # first: it watches the shared loop
        self.auth = self.add("auth", AuthService(self.db, s.auth))
        self.audit = self.add("audit", Audit(self.db, s.audit))  # before relay and plans
        self.registry = self.add("registry", build_registry(self))  # before streams
        self.streams = self.add("streams", build_streams(self))
        self.relay = self.add("relay", build_relay(self))  # leases hubs per viewer
        self.sfu = self.add("sfu", build_sfu(self))  # only with relay.sfu
        self.whip_out = self.add("whip_out", build_whip_out(self))  # only with relay.whip_out
        self.diagnosis = self.add("diagnosis", build_diagnosis(self))  # before motion
        self.motion = self.add("motion", build_motion(self))  # leases sub-streams
        self.camera_events = self.add("camera_events", build_camera_events(self))
        self.recorder = self.add("recorder", build_recorder(self))  # before linkage
        reports = None
        if s.reports.enabled:  # reads the registry's cameras and the recorder's policies
            cameras = local_cameras(self.registry, s.cameras)
            continuous = continuous_cameras(self.recorder)
            reports = ReportService(
                s.reports, self.db, self.path, cameras, continuous, bus=self.bus
            )
        self.reports = self.add("reports", reports)
        # Plans and linkage reach cameras wherever they are through cascade.access, which
        # looks up the registry, recorder and cascade (built later) when a plan runs.
        ptz, record = partial(access.ptz, self), partial(access.record, self)
        # MQTT is started last (it only listens to the bus), but plans notify through it.
        mqtt = MqttNotifier(s.mqtt, s.cascade.id, self.bus) if s.mqtt.host else None
        plans = Plans(self, ptz=ptz, record=record, audit=self.audit, mqtt=mqtt)
        self.plans = self.add("plans", plans)  # before linkage, which launches them
        self.linkage = self.add("linkage", Linkage(self, record=record, plans=self.plans))
        self.tours = self.add("tours", Tours(self.db))
        self.maps = self.add("maps", Maps(self.db, self.data_dir / "maps"))
        self.cascade = self.add("cascade", build_cascade(self))  # registers a resolver
        self.maps.set_downlink(self.cascade.downlink)  # maps below are asked of the children
        self.export = self.add("export", build_export(self))  # reads through recorder, cascade
        self.discovery = self.add("discovery", build_discovery(self))  # marks cameras seen
        self.gb28181_media = self.add(
            "gb28181_media", build_ps_backend(self) if s.gb28181 else None
        )
        self.gb28181 = self.add("gb28181", build_gb28181(self))  # after cascade: its tree
        self.mqtt = self.add("mqtt", mqtt)  # last: it only listens to the bus

    def add(self, name: str, part: P) -> P:
        """Register a built part (or None, for a part that is off) for start and stop."""
        if part is not None:
            self.parts[name] = part
            self.states[name] = "built"
        return part

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
