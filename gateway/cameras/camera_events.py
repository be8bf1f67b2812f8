"""``gw.camera_events``: the cameras' own alarms, read by ONVIF PullPoint, as bus events.

For every enabled ONVIF camera whose ``motion.source`` is ``camera`` or ``both``
one task keeps a PullPoint subscription: it long-polls PullMessages, renews the
subscription before it expires (with a quarter of its life left), retries a failed
pull, and rebuilds the subscription after ``max_failures`` failures in a row,
with a growing pause while the camera stays unreachable. A camera without an
events service, or one that refuses PullPoint (ActionNotSupported), is marked
``unsupported`` and not asked again until its ONVIF endpoint changes.

Motion, tamper and digital-input topics (see :mod:`gateway.cameras.topics`)
become ``camera_motion``, ``tamper`` and ``input`` events: published once when
they start (``end`` unset) and again, same id, when they end, like motion events,
so they reach the store, SSE, linkage, the recorder, the uplink and MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.aio import within
from gateway.cameras import onvif
from gateway.cameras.model import Camera
from gateway.cameras.pullpoint import TEV, PullPoint
from gateway.cameras.registry import Registry
from gateway.cameras.soap import SoapClient, SoapFault
from gateway.cameras.tls import TlsPolicy, policy_of
from gateway.cameras.topics import ChannelState, classify
from gateway.core import Core
from gateway.events.model import Event, utcnow

log = logging.getLogger(__name__)

SUPERVISE_S = 2.0
_UNSUPPORTED = {"ActionNotSupported", "PullPointNotSupportedFault", "NoSuchService"}
_PICTURED = {"camera_motion", "tamper"}  # alarms that get the camera's snapshot


class Unsupported(Exception):
    """The camera offers no PullPoint events; the message says why."""


@dataclass
class CameraEventState:
    """What the API and metrics show per camera."""

    camera: str
    state: str = "starting"  # starting | subscribed | retrying | unsupported
    reason: str = ""
    events: int = 0
    notifications: int = 0
    renewals: int = 0
    rebuilds: int = 0
    subscribed_at: float | None = None
    open: dict[tuple[str, str], Event] = field(default_factory=dict, repr=False)
    latest: dict[str, Event] = field(default_factory=dict, repr=False)  # id → last published

    def public(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "state": self.state,
            "reason": self.reason,
            "events": self.events,
            "notifications": self.notifications,
            "renewals": self.renewals,
            "rebuilds": self.rebuilds,
        }


class CameraEvents:
    """The ``camera_events`` part; see the module docstring."""

    def __init__(
        self,
        core: Core,
        registry: Registry,
        *,
        lifetime_s: float = 60.0,
        pull_timeout_s: float = 10.0,
        max_failures: int = 3,
        backoff_max_s: float = 60.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.core = core  # the bus the alarms go to, and this gateway's path (their source)
        self.registry = registry
        self.lifetime_s = lifetime_s
        self.pull_timeout_s = pull_timeout_s
        self.max_failures = max_failures
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.states: dict[str, CameraEventState] = {}
        self._tasks: dict[str, tuple[tuple[Any, ...], asyncio.Task[None]]] = {}
        self._unsupported: dict[str, tuple[Any, ...]] = {}  # camera → endpoint key refused
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.registry.on_change(self._camera_changed)
        self._sync()
        self._supervisor = asyncio.create_task(self._supervise(), name="camera events")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for cid in list(self._tasks):
            await self._stop_one(cid)
        for task in list(self._side_tasks):
            task.cancel()

    def _camera_changed(self, _camera: Camera | None = None) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), SUPERVISE_S)
            self._wake.clear()
            try:
                self._sync()
            except Exception:
                log.exception("camera events: reconciling failed")

    # -- which cameras ------------------------------------------------------------------
    def desired(self) -> dict[str, tuple[Any, ...]]:
        """Camera id → endpoint key, for cameras whose motion source includes the camera."""
        registry = self.registry
        out: dict[str, tuple[Any, ...]] = {}
        for cam in registry.list():
            if not cam.onvif or not cam.enabled or "/" in cam.id:
                continue
            if cam.motion.source not in ("camera", "both"):
                continue
            user, password = registry.credentials(cam.id)
            https, tls = policy_of(cam.onvif)
            out[cam.id] = (
                cam.onvif["host"],
                cam.onvif["port"],
                user,
                password,
                https,
                tls.fingerprint,
                tls.trust_on_first_use,
            )
        return out

    def _sync(self) -> None:
        want = self.desired()
        for cid, (key, task) in list(self._tasks.items()):
            if want.get(cid) != key or task.done():
                if task.done() and want.get(cid) == key:
                    continue  # ended for good (unsupported): not retried in a loop
                self._spawn_stop(cid)
        for cid, key in want.items():
            if cid in self._tasks:
                continue
            if self._unsupported.get(cid) == key:
                continue
            self._unsupported.pop(cid, None)
            state = self.states.setdefault(cid, CameraEventState(cid))
            task = asyncio.create_task(self._run(cid, key, state), name=f"events {cid}")
            self._tasks[cid] = (key, task)
        for cid in [c for c in self.states if c not in want]:
            self.states.pop(cid, None)

    def _spawn_stop(self, cid: str) -> None:
        _key, task = self._tasks.pop(cid)
        task.cancel()

    async def _stop_one(self, cid: str) -> None:
        entry = self._tasks.pop(cid, None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(BaseException):
                await entry[1]

    # -- one camera ---------------------------------------------------------------------
    async def _run(self, cid: str, key: tuple[Any, ...], state: CameraEventState) -> None:
        channels = ChannelState()
        try:
            await self._follow(cid, key, state, channels)
        finally:
            # Stopped, removed, or no longer asked for: no alarm stays open for ever.
            self._end_open(cid, state, channels, "stopped")

    def _end_open(
        self, cid: str, state: CameraEventState, channels: ChannelState, why: str
    ) -> None:
        """End the open alarms: nobody can tell us any more when they end."""
        for key in list(state.open):
            started = state.open.pop(key)
            data = {**started.data, "ended_by": why}
            self._send(cid, started.model_copy(update={"end": utcnow(), "data": data}))
        channels.clear()

    async def _follow(
        self, cid: str, key: tuple[Any, ...], state: CameraEventState, channels: ChannelState
    ) -> None:
        failures = 0
        while True:
            try:
                await self._session(cid, key, state, channels)
                failures = 0
            except Unsupported as why:
                state.state, state.reason = "unsupported", str(why)
                self._unsupported[cid] = key
                log.info("%s: no ONVIF events from the camera: %s", cid, why)
                return
            except onvif.OnvifError as err:
                # A subscription that worked for a while starts the count again: a
                # camera that drops one now and then is rebuilt at once every time.
                failures = 1 if state.state == "subscribed" else failures + 1
                if state.state == "subscribed":
                    # The new subscription's Initialized messages open them again.
                    self._end_open(cid, state, channels, "subscription lost")
                state.state, state.reason = "retrying", str(err)[:300]
                state.rebuilds += 1
                if failures == 1 or failures % 10 == 0:
                    log.warning("%s: ONVIF events: %s; subscribing again", cid, err)
            delay = 0.0 if failures <= 1 else min(self.backoff_max_s, 0.5 * 2 ** (failures - 1))
            await asyncio.sleep(delay)

    async def _session(
        self, cid: str, key: tuple[Any, ...], state: CameraEventState, channels: ChannelState
    ) -> None:
        host, port, user, password, https, pinned, first_use = key
        tls = TlsPolicy(fingerprint=pinned, trust_on_first_use=first_use)
        client = onvif.OnvifClient(
            host, port, user, password, timeout=self.timeout_s, label=cid, https=https, tls=tls
        )
        try:
            await client.connect()
            events_url = client.services().get(TEV)
            offset = client.clock_offset_s or 0.0
        finally:
            await client.close()
        if not events_url:
            raise Unsupported("the camera lists no events service")
        soap = SoapClient(
            cid, user, password, clock_offset_s=offset, timeout=self.timeout_s, tls=tls
        )
        pullpoint = PullPoint(soap, events_url, lifetime_s=self.lifetime_s)
        try:
            try:
                await pullpoint.create()
            except SoapFault as fault:
                if _UNSUPPORTED & set(fault.subcodes):
                    raise Unsupported(str(fault)) from None
                raise
            state.state, state.reason, state.subscribed_at = "subscribed", "", time.monotonic()
            log.info("%s: subscribed to the camera's ONVIF events", cid)
            await self._pull_loop(cid, pullpoint, state, channels)
        finally:
            with contextlib.suppress(onvif.OnvifError, asyncio.CancelledError):
                await within(pullpoint.unsubscribe(), 2)
            await soap.close()

    async def _pull_loop(
        self, cid: str, pullpoint: PullPoint, state: CameraEventState, channels: ChannelState
    ) -> None:
        failures = 0
        # Renew with a quarter of the life left, and never closer than 2 s to the end
        # (a loaded camera or box must not let the subscription lapse).
        margin = max(2.0, self.lifetime_s / 4)
        while True:
            try:
                left = pullpoint.expires_at - time.monotonic()
                if left <= margin:
                    await pullpoint.renew()
                    state.renewals += 1
                    left = pullpoint.expires_at - time.monotonic()
                wait = max(1.0, min(self.pull_timeout_s, left - margin))
                notes = await pullpoint.pull(wait)
                failures = 0
            except SoapFault:
                raise  # the subscription is gone or refused: build a new one
            except onvif.OnvifError:
                failures += 1
                if failures >= self.max_failures:
                    raise
                await asyncio.sleep(0.5)
                continue
            for note in notes:
                state.notifications += 1
                signal = classify(note)
                if signal is None:
                    continue
                change = channels.apply(signal)
                if change is not None:
                    self._publish(cid, state, signal.type, signal.channel, signal.topic, change)

    def _publish(
        self, cid: str, state: CameraEventState, kind: str, channel: str, topic: str, change: str
    ) -> None:
        key = (kind, channel)
        if change == "start":
            data = {"via": "onvif", "topic": topic}
            if channel:
                data["channel"] = channel
            event = Event(camera=cid, type=kind, source=self.core.path, data=data)
            state.open[key] = event
            state.events += 1
            if kind in _PICTURED:
                self._spawn(self._attach_snapshot(cid, state, event.id))
        else:
            started = state.open.pop(key, None)
            if started is None:
                return
            event = started.model_copy(update={"end": utcnow()})
        state.latest[event.id] = event
        while len(state.latest) > 64:
            state.latest.pop(next(iter(state.latest)))
        self._send(cid, event)

    def _send(self, cid: str, event: Event, jpeg: bytes | None = None) -> None:
        try:
            self.core.bus.publish(event, snapshot_jpeg=jpeg)
        except Exception:
            log.exception("%s: could not publish %s", cid, event.type)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _attach_snapshot(self, cid: str, state: CameraEventState, event_id: str) -> None:
        """The camera's picture for the alarm list, fetched after the event went out.

        Publishing first keeps the alarm's delay at the network's; the event is then
        published again, same id, with its snapshot (and its end, if it came since).
        """
        try:
            jpeg = await within(self.registry.snapshot(cid), self.timeout_s)
        except Exception as err:  # no snapshot is no reason to lose the event
            log.info("%s: no snapshot for the camera's alarm: %s", cid, err)
            return
        latest = state.latest.get(event_id)
        if not jpeg or latest is None:
            return
        url = f"/api/v1/events/{event_id}/snapshot.jpg"
        updated = latest.model_copy(update={"snapshot_url": url})
        state.latest[event_id] = updated
        for key, open_event in state.open.items():
            if open_event.id == event_id:
                state.open[key] = updated
        self._send(cid, updated, jpeg)

    # -- figures ------------------------------------------------------------------------
    def status(self, camera_id: str) -> dict[str, Any] | None:
        state = self.states.get(camera_id)
        return state.public() if state else None

    def stats(self) -> list[dict[str, Any]]:
        return [s.public() for _, s in sorted(self.states.items())]

    def metrics(self) -> Any:
        """Prometheus samples, one series per camera."""
        from gateway.metrics import Sample

        for s in self.stats():
            labels = {"camera": s["camera"]}
            up = int(s["state"] == "subscribed")
            yield Sample("camera_events_subscribed", up, labels, "1 while a PullPoint is held")
            yield Sample(
                "camera_events_total", s["events"], labels, "Camera alarm events", "counter"
            )
            yield Sample(
                "camera_events_rebuilds_total",
                s["rebuilds"],
                labels,
                "PullPoint subscriptions rebuilt",
                "counter",
            )
