"""ONVIF events service (ver10 ``tev:``) of the simulated camera: PullPoint subscriptions.

``CreatePullPointSubscription`` at ``/onvif/event_service`` gives a subscription
at ``/onvif/subscription/<id>``, where ``PullMessages`` (long poll: answered as
soon as a message is queued, or empty after the request's ``Timeout``),
``Renew``, ``Unsubscribe`` and ``SetSynchronizationPoint`` are served. A
subscription ends at its termination time unless renewed; a camera going
offline forgets its subscriptions, as a rebooting camera does.

What the camera raises (``camera.set_motion``, ``camera.set_alarm``) becomes
notification messages in the topics vendors use:

- motion: ``tns1:RuleEngine/CellMotionDetector/Motion`` (``IsMotion``) and
  ``tns1:VideoSource/MotionAlarm`` (``State``), both, as Hikvision sends them;
- tamper: ``tns1:VideoSource/GlobalSceneChange/ImagingService`` (``State``) and
  ``tns1:RuleEngine/TamperDetector/Tamper`` (``IsTamper``);
- input: ``tns1:Device/Trigger/DigitalInput`` (``LogicalState``, ``InputToken``).

A new subscription first gets every property's current state with
``PropertyOperation="Initialized"``. ``camera.events`` False turns the service
off (not in GetServices; operations are ``ActionNotSupported``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from gateway.aio import within
from gateway.sim.onvif_device import events_service_capabilities
from gateway.sim.onvif_soap import SoapFault, text_of, x, xa

SUBSCRIPTION_PREFIX = "/onvif/subscription/"
DEFAULT_LIFETIME_S = 60.0
MAX_LIFETIME_S = 3600.0
MAX_PULL_TIMEOUT_S = 60.0
MAX_QUEUE = 256
MAX_SUBSCRIPTIONS = 16
CONCRETE = "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet"
SOURCE = ("VideoSourceConfigurationToken", "VideoSourceConfig_1")
RULE = ("Rule", "MyMotionDetectorRule")

# alarm kind → [(topic, source items, data item name)]
TOPICS: dict[str, list[tuple[str, list[tuple[str, str]], str]]] = {
    "motion": [
        ("tns1:RuleEngine/CellMotionDetector/Motion", [SOURCE, RULE], "IsMotion"),
        ("tns1:VideoSource/MotionAlarm", [("Source", "VideoSource_1")], "State"),
    ],
    "tamper": [
        (
            "tns1:VideoSource/GlobalSceneChange/ImagingService",
            [("Source", "VideoSource_1")],
            "State",
        ),
        ("tns1:RuleEngine/TamperDetector/Tamper", [SOURCE, ("Rule", "MyTamperRule")], "IsTamper"),
    ],
    "input": [("tns1:Device/Trigger/DigitalInput", [("InputToken", "DI_1")], "LogicalState")],
}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float:
    """``PT60S``, ``PT1M``, ``P1DT2H`` → seconds; ValueError for anything else."""
    m = _DURATION.match(text.strip())
    if not m or text.strip() in ("P", "PT"):
        raise ValueError(f"not an xs:duration: {text!r}")
    days, hours, minutes, seconds = m.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60) + float(
        seconds or 0
    )


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _termination(text: str | None, now: float) -> float:
    """A requested termination (a duration or an absolute time) → camera-clock seconds."""
    if not text:
        return now + DEFAULT_LIFETIME_S
    try:
        if text.strip().startswith("P"):
            lifetime = parse_duration(text)
        else:
            value = text.strip().replace("Z", "+00:00")
            stamp = dt.datetime.fromisoformat(value)
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            lifetime = stamp.timestamp() - now
    except ValueError:
        raise SoapFault(
            "Sender", "wsnt:UnacceptableInitialTerminationTimeFault", f"bad time {text!r}"
        ) from None
    if lifetime <= 0:
        raise SoapFault("Sender", "wsnt:UnacceptableTerminationTimeFault", "time in the past")
    return now + min(lifetime, MAX_LIFETIME_S)


@dataclass
class _Subscription:
    id: str
    terminates: float  # camera clock
    queue: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_QUEUE))
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventsService:
    """One camera's PullPoint subscriptions and the messages they carry."""

    def __init__(self, camera: Any) -> None:
        self.camera = camera
        self.subscriptions: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self.counters = {"created": 0, "renewed": 0, "pulls": 0, "unsubscribed": 0, "sent": 0}
        self.state: dict[str, bool] = {"motion": bool(getattr(camera, "motion", False))}
        self.state.update(getattr(camera, "alarms", {}) or {})

    @property
    def enabled(self) -> bool:
        return bool(getattr(self.camera, "events", True))

    def now(self) -> float:
        return time.time() + float(getattr(self.camera, "clock_offset_s", 0) or 0)

    # -- what the camera raises ---------------------------------------------------
    def on_camera_change(self, camera: Any, what: str) -> None:
        if what == "fault" and not camera.online:
            self.subscriptions.clear()  # a camera that goes away forgets its subscribers
        elif what == "motion":
            self.raise_alarm("motion", bool(camera.motion))
        elif what.startswith("alarm:"):
            kind = what.split(":", 1)[1]
            self.raise_alarm(kind, bool(camera.alarms.get(kind)))

    def raise_alarm(self, kind: str, on: bool, operation: str = "Changed") -> None:
        self.state[kind] = on
        self._expire()
        for sub in self.subscriptions.values():
            for message in self._messages(kind, on, operation):
                sub.queue.append(message)
            sub.wake.set()

    def _messages(self, kind: str, on: bool, operation: str) -> list[str]:
        out = []
        for topic, source, name in TOPICS.get(kind, []):
            items = "".join(f"<tt:SimpleItem Name={xa(k)} Value={xa(v)}/>" for k, v in source)
            out.append(
                f'<wsnt:NotificationMessage><wsnt:Topic Dialect="{CONCRETE}">{x(topic)}'
                "</wsnt:Topic><wsnt:Message>"
                f'<tt:Message UtcTime="{_iso(self.now())}" PropertyOperation="{operation}">'
                f"<tt:Source>{items}</tt:Source><tt:Data>"
                f'<tt:SimpleItem Name="{name}" Value="{"true" if on else "false"}"/>'
                "</tt:Data></tt:Message></wsnt:Message></wsnt:NotificationMessage>"
            )
        return out

    def _expire(self) -> None:
        now = self.now()
        for sid in [s.id for s in self.subscriptions.values() if s.terminates <= now]:
            del self.subscriptions[sid]

    # -- operations ---------------------------------------------------------------
    def _require(self) -> None:
        if not self.enabled:
            raise SoapFault("Receiver", "ter:ActionNotSupported", "no events service")

    def create_pull_point(self, _camera: Any, op: etree._Element) -> str:
        self._require()
        self._expire()
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise SoapFault(
                "Receiver", "tev:PullPointNotSupportedFault", "too many subscriptions", 500
            )
        now = self.now()
        sub = _Subscription(
            str(next(self._ids)), _termination(text_of(op, "InitialTerminationTime"), now)
        )
        for kind in TOPICS:
            sub.queue.extend(self._messages(kind, self.state.get(kind, False), "Initialized"))
        self.subscriptions[sub.id] = sub
        self.counters["created"] += 1
        address = f"{self.camera.http_scheme}://{self.camera.address}:{self.camera.http_port}{SUBSCRIPTION_PREFIX}{sub.id}"
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{x(address)}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{_iso(now)}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{_iso(sub.terminates)}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def service_capabilities(self, _camera: Any, _op: etree._Element) -> str:
        self._require()
        caps = events_service_capabilities()
        return f"<tev:GetServiceCapabilitiesResponse>{caps}</tev:GetServiceCapabilitiesResponse>"

    def operations(self) -> dict[str, Any]:
        """Operations served at the events service address (by local name)."""
        return {
            "CreatePullPointSubscription": self.create_pull_point,
            "GetServiceCapabilities": self.service_capabilities,
        }

    def _subscription(self, sid: str) -> _Subscription:
        self._require()
        self._expire()
        sub = self.subscriptions.get(sid)
        if sub is None:
            raise SoapFault("Sender", "wsrf-rw:ResourceUnknownFault", f"no subscription {sid!r}")
        return sub

    async def subscription_call(self, sid: str, name: str, op: etree._Element) -> str:
        """One request to the subscription at ``/onvif/subscription/<sid>``."""
        sub = self._subscription(sid)
        if name == "PullMessages":
            return await self._pull(sub, op)
        if name == "Renew":
            sub.terminates = _termination(text_of(op, "TerminationTime"), self.now())
            self.counters["renewed"] += 1
            return (
                f"<wsnt:RenewResponse><wsnt:TerminationTime>{_iso(sub.terminates)}"
                f"</wsnt:TerminationTime><wsnt:CurrentTime>{_iso(self.now())}</wsnt:CurrentTime>"
                "</wsnt:RenewResponse>"
            )
        if name == "Unsubscribe":
            self.subscriptions.pop(sid, None)
            sub.wake.set()
            self.counters["unsubscribed"] += 1
            return "<wsnt:UnsubscribeResponse/>"
        if name == "SetSynchronizationPoint":
            for kind in TOPICS:
                sub.queue.extend(self._messages(kind, self.state.get(kind, False), "Initialized"))
            sub.wake.set()
            return "<tev:SetSynchronizationPointResponse/>"
        raise SoapFault("Receiver", "ter:ActionNotSupported", f"{name} is not supported")

    async def _pull(self, sub: _Subscription, op: etree._Element) -> str:
        self.counters["pulls"] += 1
        try:
            timeout = min(parse_duration(text_of(op, "Timeout") or "PT1S"), MAX_PULL_TIMEOUT_S)
            limit = max(1, min(int(text_of(op, "MessageLimit") or "100"), 1024))
        except ValueError:
            raise SoapFault("Sender", "ter:InvalidArgVal", "bad Timeout or MessageLimit") from None
        deadline = time.monotonic() + timeout
        while not sub.queue and sub.id in self.subscriptions:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sub.wake.clear()
            try:
                await within(sub.wake.wait(), remaining)
            except TimeoutError:
                break
        messages = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
        self.counters["sent"] += len(messages)
        now = self.now()
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{_iso(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{_iso(sub.terminates)}</tev:TerminationTime>"
            f"{''.join(messages)}</tev:PullMessagesResponse>"
        )

    def close(self) -> None:
        for sub in self.subscriptions.values():
            sub.wake.set()
        self.subscriptions.clear()
