"""Builds the service: wires the parts together and owns start and stop.

``Gateway`` knows nothing of HTTP; ``gateway.api.server`` puts FastAPI on top of it.
``_build`` constructs every part, in start order, handing each the neighbours it
names in its constructor; each part is a typed attribute (``gw.registry``,
``gw.recorder`` …, ``None`` where configuration turns it off) with ``async start()`` /
``async stop()``. Parts start in build order and stop in reverse. No part finds
another by name: a new part is one constructor call here, after the parts it uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.audit import Audit
from gateway.auth.service import AuthService
from gateway.cameras.camera_events import CameraEvents
from gateway.cameras.rediscovery import DiscoveryService
from gateway.cameras.registry import Registry
from gateway.cascade import access
from gateway.cascade.part import Cascade
from gateway.config import Settings
from gateway.diagnosis.service import DiagnosisService
from gateway.events.bus import EventBus
from gateway.events.linkage import Linkage
from gateway.events.mqtt import MqttNotifier
from gateway.export.service import Exporter
from gateway.gb28181.control import AccessControl
from gateway.gb28181.part import Gb28181Part
from gateway.gb28181.ps.backend import PsMediaBackend
from gateway.gb28181.records import GatewayRecords
from gateway.looplag import LoopLag
from gateway.maps.service import Maps
from gateway.motion.service import MotionService
from gateway.plans.service import Plans
from gateway.recorder.service import Recorder
from gateway.relay.sessions import Relay
from gateway.relay.sfu.relay import SfuRelay
from gateway.relay.sfu.whip import WhipOut
from gateway.reports.service import ReportService, continuous_cameras, local_cameras
from gateway.store.db import Database
from gateway.streams.manager import StreamManager
from gateway.tours import Tours

log = logging.getLogger(__name__)


class Part(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


P = TypeVar("P", bound="Part | None")


class Measured(Protocol):
    def metrics(self) -> Iterable[Any]: ...


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
        # The parts built (not those turned off), by name, in start order: the
        # lifecycle's list for start, stop and health, never a way to find a neighbour.
        self.parts: dict[str, Part] = {}
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
        self.registry = self.add("registry", Registry(self))  # before streams
        self.streams = self.add("streams", StreamManager(s, registry=self.registry))
        self.relay = self.add(
            "relay",
            Relay(
                s.relay,
                self.streams,
                self.registry,
                subscriber_buffer=s.streams.subscriber_buffer,
                audit=self.audit,
                log_level=s.logging.level,
                log_json=s.logging.json_format,
            ),
        )  # leases hubs per viewer
        self.sfu = self.add(
            "sfu",
            SfuRelay(
                s.relay.sfu,
                s.relay,
                self.relay,
                owner=self.path,
                feed_buffer=s.streams.subscriber_buffer,
            )
            if s.relay.sfu is not None
            else None,
        )
        self.whip_out = self.add(
            "whip_out", WhipOut(s.relay.whip_out, self.relay) if s.relay.whip_out else None
        )
        self.diagnosis = self.add(
            "diagnosis",
            DiagnosisService(s.diagnosis, self.bus, source=self.path, db=self.db)
            if s.diagnosis.enabled
            else None,
        )  # before motion
        self.motion = self.add(
            "motion", MotionService(self, self.streams, self.registry, diagnosis=self.diagnosis)
        )  # leases sub-streams
        self.camera_events = self.add("camera_events", CameraEvents(self, self.registry))
        self.recorder = self.add(
            "recorder", Recorder(self, registry=self.registry, streams=self.streams)
        )  # before linkage
        reports = None
        if s.reports.enabled:  # reads the registry's cameras and the recorder's policies
            cameras = local_cameras(self.registry, s.cameras)
            continuous = continuous_cameras(self.recorder)
            reports = ReportService(
                s.reports, self.db, self.path, cameras, continuous, bus=self.bus
            )
        self.reports = self.add("reports", reports)
        # Plans and linkage reach cameras wherever they are through cascade.access, which
        # reads the registry, recorder and cascade (built later) when a plan runs.
        ptz, record = partial(access.ptz, self), partial(access.record, self)
        # MQTT is started last (it only listens to the bus), but plans notify through it.
        mqtt = MqttNotifier(s.mqtt, s.cascade.id, self.bus) if s.mqtt.host else None
        plans = Plans(self, ptz=ptz, record=record, audit=self.audit, mqtt=mqtt)
        self.plans = self.add("plans", plans)  # before linkage, which launches them
        self.linkage = self.add("linkage", Linkage(self, record=record, plans=self.plans))
        self.tours = self.add("tours", Tours(self.db))
        self.maps = self.add("maps", Maps(self.db, self.data_dir / "maps"))
        self.cascade = self.add(  # registers a resolver with streams
            "cascade",
            Cascade(
                self,
                registry=self.registry,
                streams=self.streams,
                recorder=self.recorder,
                reports=self.reports,
                maps=self.maps,
            ),
        )
        self.maps.set_downlink(self.cascade.downlink)  # maps below are asked of the children
        self.export = self.add(  # reads through recorder, cascade
            "export", Exporter(self, s.export, here=self.cascade.local)
        )
        self.discovery = self.add(
            "discovery", DiscoveryService(s.discovery, self.registry)
        )  # marks cameras seen
        gb = s.gb28181  # None: GB/T 28181 is not configured
        self.gb28181_media = self.add(
            "gb28181_media", PsMediaBackend(self.streams) if gb is not None else None
        )
        self.gb28181 = self.add(  # after cascade: its tree, and cameras below by path
            "gb28181",
            Gb28181Part(
                gb,
                db=self.db,
                tree=self.cascade.tree,
                media=self.gb28181_media,  # None: INVITEs are answered 488
                overrides_path=self.data_dir / "gb28181_upstreams.json",
                records=GatewayRecords(self.cascade.local, self.data_dir),
                cameras=AccessControl(self.cascade.local),
                bus=self.bus,
            )
            if gb is not None
            else None,
        )
        self.mqtt = self.add("mqtt", mqtt)  # last: it only listens to the bus
        # What /metrics collects, part by part (a part that is off has none).
        measured: list[tuple[str, Measured | None]] = [
            ("looplag", self.looplag),
            ("streams", self.streams),
            ("relay", self.relay),
            ("sfu", self.sfu),
            ("whip_out", self.whip_out),
            ("diagnosis", self.diagnosis),
            ("motion", self.motion),
            ("camera_events", self.camera_events),
            ("reports", self.reports),
            ("cascade", self.cascade),
            ("gb28181_media", self.gb28181_media),
            ("mqtt", self.mqtt),
        ]
        self.metric_sources = {name: part.metrics for name, part in measured if part}

    def add(self, name: str, part: P) -> P:
        """Register a built part (or None, for a part that is off) for start and stop."""
        if part is not None:
            self.parts[name] = part
            self.states[name] = "built"
        return part

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
