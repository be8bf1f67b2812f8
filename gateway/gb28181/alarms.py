"""Alarms to the platforms (报警通知, GB/T 28181-2016 A.2.5.4 / 2022 A.2.5.5): our events
(motion from our detector, the camera's own ONVIF motion and tamper events, linkage)
become ``<Notify><CmdType>Alarm</CmdType>`` bodies with the camera's channel DeviceID,
AlarmPriority, AlarmMethod, AlarmTime and ``Info/AlarmType``; every platform that shares
the camera gets one, as a NOTIFY where it subscribed to alarms, else a MESSAGE.

Codes (the same in both editions): AlarmMethod 5 = video alarm (视频报警), with AlarmType
2 = motion target detection (运动目标检测报警) and 11 = video anomaly (视频异常检测报警,
what ONVIF's tamper / scene-change / blur events are); AlarmMethod 7 = other (其他报警)
for linkage. Priority 1 (highest) … 4.

A platform's ``GuardCmd ResetGuard`` (撤防) for a channel, or for this device, stops
its alarms to that platform until ``SetGuard``. Each platform has a bounded queue:
while it is unreachable alarms are held and retried with backoff, at most
:data:`MAX_HELD` of them (the oldest dropped first and counted) and none older than
:data:`MAX_AGE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Protocol

from gateway.config import GbUpstream
from gateway.events.model import Event
from gateway.gb28181 import manscdp
from gateway.gb28181.channels import ChannelDirectory
from gateway.gb28181.control import DeviceControl
from gateway.gb28181.sip.agent import SipTimeout
from gateway.gb28181.subscriptions import Subscriptions

log = logging.getLogger(__name__)
MAX_HELD = 200
MAX_AGE_S = 600.0
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
CHINA = timezone(
    timedelta(hours=8)
)  # AlarmTime is local time without a zone; platforms are in UTC+8


@dataclass(frozen=True, slots=True)
class AlarmCode:
    priority: int
    method: int
    type: int | None
    description: str


CODES: dict[str, AlarmCode] = {
    "motion": AlarmCode(3, 5, 2, "运动目标检测报警"),
    "camera_motion": AlarmCode(3, 5, 2, "运动目标检测报警(摄像机)"),
    "tamper": AlarmCode(2, 5, 11, "视频异常检测报警"),
    "linkage": AlarmCode(2, 7, None, "联动报警"),
}


class Client(Protocol):
    cfg: GbUpstream
    directory: ChannelDirectory
    subscriptions: Subscriptions
    control: DeviceControl
    state: str

    def next_sn(self) -> int: ...


@dataclass(slots=True)
class Held:
    event: Event
    queued_at: float
    tries: int = 0


def alarm_time(ev: Event) -> str:
    return ev.start.astimezone(CHINA).strftime("%Y-%m-%dT%H:%M:%S")


def alarm_fields(ev: Event, channel_id: str, code: AlarmCode) -> list[tuple[str, object]]:
    """The body fields after CmdType and SN."""
    fields: list[tuple[str, object]] = [
        ("DeviceID", channel_id),
        ("AlarmPriority", code.priority),
        ("AlarmMethod", code.method),
        ("AlarmTime", alarm_time(ev)),
        ("AlarmDescription", f"{code.description} {ev.camera}"[:120]),
    ]
    if code.type is not None:
        fields.append(("Info", [("AlarmType", code.type)]))
    return fields


class AlarmForwarder:
    """Listens on the event bus; one bounded queue and sender task per platform."""

    def __init__(self, clients: Callable[[], Mapping[str, Client]]) -> None:
        self.clients = clients
        self.delivered = 0
        self.dropped = 0
        self.expired = 0
        self.disarmed = 0  # alarms not sent because the platform disarmed the channel
        self._queues: dict[str, deque[Held]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seen: deque[str] = deque(maxlen=1000)  # event ids already queued
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None

    def held(self, uid: str) -> int:
        return len(self._queues.get(uid, ()))

    # -- the bus listener (any thread; must be quick) -------------------------------------

    def on_event(self, ev: Event) -> None:
        if ev.type not in CODES or ev.end is not None or self._loop is None:
            return  # only the start of an alarm; its end is the same id published again
        if ev.id in self._seen:
            return
        self._seen.append(ev.id)
        self._loop.call_soon_threadsafe(self._enqueue, ev)

    def _enqueue(self, ev: Event) -> None:
        for uid, client in self.clients().items():
            if not client.directory.shared(ev.camera):
                continue
            queue = self._queues.setdefault(uid, deque())
            if len(queue) >= MAX_HELD:
                queue.popleft()
                self.dropped += 1
                log.warning("gb28181 %s: alarm queue full, the oldest alarm dropped", uid)
            queue.append(Held(ev, time.monotonic()))
            self._wake.setdefault(uid, asyncio.Event()).set()
            task = self._tasks.get(uid)
            if task is None or task.done():
                self._tasks[uid] = asyncio.create_task(self._drain(uid), name=f"gb-alarms-{uid}")

    # -- delivery ----------------------------------------------------------------------

    async def _drain(self, uid: str) -> None:
        queue = self._queues[uid]
        wake = self._wake[uid]
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            held = queue[0]
            if time.monotonic() - held.queued_at > MAX_AGE_S:
                queue.popleft()
                self.expired += 1
                log.warning("gb28181 %s: alarm %s expired undelivered", uid, held.event.id)
                continue
            client = self.clients().get(uid)
            ok = client is not None and await self._send(client, held.event)
            if ok:
                if queue and queue[0] is held:
                    queue.popleft()
                continue
            delay = BACKOFF_S[min(held.tries, len(BACKOFF_S) - 1)]
            held.tries += 1
            await asyncio.sleep(delay)

    async def _send(self, client: Client, ev: Event) -> bool:
        cfg = client.cfg
        if client.state != "online":
            return False
        channel = await asyncio.to_thread(_channel_of, client.directory, ev.camera)
        if channel is None:
            log.info("gb28181 %s: alarm for %s, which is not a channel: dropped", cfg.id, ev.camera)
            return True  # nothing to retry
        if not client.control.armed(channel):
            log.info("gb28181 %s: alarm of %s not sent: disarmed (ResetGuard)", cfg.id, ev.camera)
            self.disarmed += 1
            return True
        body = manscdp.render(
            "Notify",
            [
                ("CmdType", "Alarm"),
                ("SN", client.next_sn()),
                *alarm_fields(ev, channel, CODES[ev.type]),
            ],
            cfg.charset,
        )
        try:
            code = CODES[ev.type]
            ok = await client.subscriptions.deliver("Alarm", body, (code.priority, code.method))
        except (SipTimeout, OSError) as err:
            log.info("gb28181 %s: alarm for %s not delivered: %s", cfg.id, ev.camera, err)
            return False
        if ok:
            self.delivered += 1
            log.info("gb28181 %s: %s alarm of %s sent as %s", cfg.id, ev.type, ev.camera, channel)
        return ok


def _channel_of(directory: ChannelDirectory, camera_path: str) -> str | None:
    for ch in directory.channels():
        if ch.kind == "camera" and ch.camera_path == camera_path:
            return ch.gb_id
    return None
