"""ONVIF events by PullPoint: the simulator's events service against our client and part.

Real sockets on loopback: the simulated camera's ONVIF server runs in this loop on
its own 127.0.91.x address; ``CameraEvents`` is the gateway's real part, given a
real event bus and a small registry holding real ``Camera`` records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cameras import onvif
from gateway.cameras.camera_events import CameraEvents
from gateway.cameras.model import Camera
from gateway.cameras.pullpoint import TEV, Notification, PullPoint
from gateway.cameras.soap import SoapClient
from gateway.cameras.topics import ChannelState, classify
from gateway.config import MotionSettings, Settings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.motion.service import MotionService
from gateway.sim import onvif_server
from tests.relay_helpers import HubStreams
from tests.test_sim_onvif import make_camera


class Registry:
    """The slice of ``gateway.cameras.registry.Registry`` the part reads."""

    def __init__(self, cameras: list[Camera], password: str) -> None:
        self.cameras = cameras
        self.password = password
        self.listeners: list[Callable[[Any], None]] = []

    def list(self) -> list[Camera]:
        return list(self.cameras)

    def get(self, camera_id: str) -> Camera | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def credentials(self, _camera_id: str) -> tuple[str, str]:
        return "admin", self.password

    async def snapshot(self, _camera_id: str) -> bytes | None:
        return None  # no picture: the alarm goes out without one

    def on_change(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def changed(self) -> None:
        for fn in self.listeners:
            fn(None)


class Gw:
    """The slice of ``gateway.core.Core`` the parts read (the bus, the path, settings)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.bus = EventBus(None)
        self.path = "town-a"
        self.settings = Settings()
        self.seen: list[tuple[float, Event]] = []
        self.bus.add_listener(lambda e: self.seen.append((time.monotonic(), e)))


def camera_record(sim: Any, source: str = "camera", cid: str = "cam-01") -> Camera:
    return Camera(
        id=cid,
        onvif={"host": sim.address, "port": sim.http_port, "username": "admin"},
        motion_settings=MotionSettings(source=source).model_dump(mode="json"),  # type: ignore[call-arg]
    )


@pytest.fixture
async def served():
    servers = []

    async def serve(**overrides: Any) -> Any:
        cam = make_camera(**overrides)
        servers.append(await onvif_server.start(cam))
        return cam

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def events_of(gw: Gw, kind: str) -> list[Event]:
    return [e for _, e in gw.seen if e.type == kind]


@pytest.fixture
async def part_factory():
    parts: list[CameraEvents] = []

    async def make(cameras: list[Camera], password: str, **kwargs: Any) -> tuple[CameraEvents, Gw]:
        gw = Gw(Registry(cameras, password))
        part = CameraEvents(gw, gw.registry, **kwargs)
        await part.start()
        parts.append(part)
        return part, gw

    yield make
    for part in parts:
        await part.stop()


async def test_pullpoint_long_poll_returns_a_motion_message_as_it_happens(served) -> None:
    cam = await served(clock_offset_s=3 * 3600)  # the client must follow the camera's clock
    async with onvif.OnvifClient(cam.address, cam.http_port, "admin", cam.password) as client:
        events_url = client.services()[TEV]
        offset = client.clock_offset_s or 0.0
    soap = SoapClient("cam", "admin", cam.password, clock_offset_s=offset)
    pullpoint = PullPoint(soap, events_url, lifetime_s=30)
    try:
        await pullpoint.create()
        assert 20 < pullpoint.expires_at - time.monotonic() <= 31  # relative to CurrentTime
        initial = await pullpoint.pull(1)
        assert {n.operation for n in initial} == {"Initialized"}
        assert "RuleEngine/CellMotionDetector/Motion" in {n.topic for n in initial}
        asyncio.get_running_loop().call_later(0.3, cam.set_motion, True)
        started = time.monotonic()
        notes = await pullpoint.pull(10)
        took = time.monotonic() - started
        assert 0.2 < took < 5, took  # answered when the motion came, not at the timeout
        assert (notes[0].topic, notes[0].data) == (
            "RuleEngine/CellMotionDetector/Motion",
            {"IsMotion": "true"},
        )
        await pullpoint.renew()
        await pullpoint.unsubscribe()
        server = onvif_server._servers[id(cam)]
        assert server.events.counters["renewed"] == 1
        assert server.events.subscriptions == {}
    finally:
        await soap.close()


def test_topics_map_vendor_forms_and_pairs_make_one_event() -> None:
    def note(topic: str, **data: str) -> Notification:
        return Notification(topic=topic, data=data, source={"InputToken": "DI_2"})

    assert classify(note("RuleEngine/CellMotionDetector/Motion", IsMotion="true")) is not None
    tamper = classify(note("VideoSource/GlobalSceneChange/ImagingService", State="1"))
    assert tamper is not None and (tamper.type, tamper.active) == ("tamper", True)
    blurry = classify(note("VideoSource/ImageTooBlurry/ImagingService", State="false"))
    assert blurry is not None and (blurry.type, blurry.active) == ("tamper", False)
    di = classify(note("Device/Trigger/DigitalInput", LogicalState="true"))
    assert di is not None and (di.type, di.channel) == ("input", "DI_2")
    assert classify(note("VideoSource/MotionAlarm", State="maybe")) is None
    assert classify(note("Monitoring/ProcessorUsage", Value="12")) is None

    state = ChannelState()
    on_a = classify(note("RuleEngine/CellMotionDetector/Motion", IsMotion="true"))
    on_b = classify(note("VideoSource/MotionAlarm", State="true"))
    off_a = classify(note("RuleEngine/CellMotionDetector/Motion", IsMotion="false"))
    off_b = classify(note("VideoSource/MotionAlarm", State="false"))
    assert on_a and on_b and off_a and off_b
    assert [state.apply(s) for s in (on_a, on_b, off_a, off_b)] == ["start", None, None, "end"]


async def test_camera_motion_tamper_and_input_become_bus_events(served, part_factory) -> None:
    cam = await served(clock_offset_s=-3 * 3600)
    part, gw = await part_factory([camera_record(cam)], cam.password)
    await wait_for(lambda: part.states["cam-01"].state == "subscribed", 10, "a subscription")
    await asyncio.sleep(0.3)  # the first long poll is in flight
    raised = time.monotonic()
    cam.set_motion(True)
    arrived, start = await wait_for(
        lambda: next(((t, e) for t, e in gw.seen if e.type == "camera_motion"), None),
        5,
        "camera_motion",
    )
    assert arrived - raised < 2.0  # typically ~5 ms on loopback; the bench measures it
    assert start.end is None and start.camera == "cam-01" and start.source == "town-a"
    assert start.data["via"] == "onvif"
    cam.set_motion(False)
    ended = await wait_for(
        lambda: [e for e in events_of(gw, "camera_motion") if e.end is not None], 5, "motion end"
    )
    assert ended[0].id == start.id  # the same event, now with its end
    assert len(events_of(gw, "camera_motion")) == 2  # two topics per change, one event
    cam.set_alarm("tamper", True)
    cam.set_alarm("input", True)
    await wait_for(lambda: events_of(gw, "tamper") and events_of(gw, "input"), 5, "tamper+input")
    assert events_of(gw, "input")[0].data["channel"] == "DI_1"


async def test_subscription_is_renewed_before_it_expires(served, part_factory) -> None:
    cam = await served()
    part, gw = await part_factory([camera_record(cam)], cam.password, lifetime_s=4)
    server = onvif_server._servers[id(cam)]
    await wait_for(lambda: server.events.counters["renewed"] >= 2, 20, "two renewals")
    assert server.events.counters["created"] == 1  # the same subscription all along
    assert part.states["cam-01"].state == "subscribed"
    cam.set_motion(True)
    await wait_for(lambda: events_of(gw, "camera_motion"), 5, "camera_motion")


async def test_subscription_is_rebuilt_after_the_camera_forgets_it(served, part_factory) -> None:
    cam = await served()
    part, gw = await part_factory([camera_record(cam)], cam.password, pull_timeout_s=2)
    server = onvif_server._servers[id(cam)]
    await wait_for(lambda: server.events.counters["created"] == 1, 10, "a subscription")
    cam.set_fault("offline")  # a reboot: subscriptions are lost
    await onvif_server.set_online(cam, False)
    await wait_for(lambda: part.states["cam-01"].state == "retrying", 15, "the loss noticed")
    cam.set_fault("online")
    await onvif_server.set_online(cam, True)
    await wait_for(lambda: server.events.counters["created"] >= 2, 20, "a new subscription")
    await wait_for(lambda: part.states["cam-01"].state == "subscribed", 10, "subscribed again")
    assert part.states["cam-01"].rebuilds >= 1
    await asyncio.sleep(0.3)
    cam.set_motion(True)
    await wait_for(lambda: events_of(gw, "camera_motion"), 5, "camera_motion after rebuild")


async def test_camera_without_events_is_marked_unsupported_and_not_retried(
    served, part_factory
) -> None:
    cam = await served(events=False)
    part, gw = await part_factory([camera_record(cam)], cam.password)
    state = await wait_for(
        lambda: part.states.get("cam-01") if part.states["cam-01"].state != "starting" else None,
        10,
        "a verdict",
    )
    assert state.state == "unsupported" and "no events service" in state.reason
    gw.registry.changed()  # reconciling again (at once) must not start another attempt
    await asyncio.sleep(0.5)
    assert part.states["cam-01"].state == "unsupported"
    assert part.states["cam-01"].rebuilds == 0
    assert onvif_server._servers[id(cam)].events.counters["created"] == 0


async def test_motion_source_decides_who_detects() -> None:
    cams = [
        Camera(id=f"c-{source}", motion_settings={"source": source})
        for source in ("gateway", "camera", "both")
    ]
    gw = Gw(Registry(cams, "x"))
    # source "camera": no motion worker, so nothing is decoded for motion.
    motion = MotionService(gw, HubStreams(), gw.registry)
    assert sorted(motion.desired()) == ["c-both", "c-gateway"]
    for cam in cams:
        cam.onvif = {"host": "127.0.0.1", "port": 80, "username": "admin"}
    assert sorted(CameraEvents(gw, gw.registry).desired()) == ["c-both", "c-camera"]


def _pull_reply() -> bytes:
    from gateway.sim.onvif_events import EventsService
    from gateway.sim.onvif_soap import envelope

    service = EventsService(make_camera())
    messages = "".join(
        m
        for kind in ("motion", "tamper", "input")
        for m in service._messages(kind, True, "Changed")
    )
    return envelope(f"<tev:PullMessagesResponse>{messages}</tev:PullMessagesResponse>")


PULL_REPLY = _pull_reply()


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(PULL_REPLY)), junk=st.binary(max_size=40))
def test_mutated_pull_replies_are_parsed_or_refused_never_crash(cut: int, junk: bytes) -> None:
    from gateway.cameras import wsd
    from gateway.cameras.media2 import parse_profiles
    from gateway.cameras.pullpoint import parse_notifications
    from gateway.cameras.soap import find

    data = PULL_REPLY[:cut] + junk + PULL_REPLY[cut:]
    try:
        root = wsd.safe_parse(data, 1 << 20)
    except wsd.WsdRejected:
        return
    reply = next(iter(find(root, "Body") or []), None)
    if reply is None:
        return
    for note in parse_notifications(reply):
        assert len(note.topic) <= 256 and len(note.data) <= 32
        classify(note)
    assert parse_profiles(reply) == []


async def test_onvif_zeep_async_pullpoint_manager_reads_the_sim(served) -> None:
    """Another client than ours (the library's PullPointManager, zeep and WS-Addressing)."""
    import datetime as dt

    from onvif import ONVIFCamera

    cam = await served()
    client = ONVIFCamera(cam.address, cam.http_port, "admin", cam.password, adjust_time=True)
    try:
        await client.update_xaddrs()
        manager = await client.create_pullpoint_manager(dt.timedelta(seconds=60), lambda: None)
        service = manager.get_service()
        first = await service.PullMessages(
            {"MessageLimit": 100, "Timeout": dt.timedelta(seconds=1)}
        )
        assert len(first.NotificationMessage) == 5  # every property's Initialized state
        cam.set_alarm("tamper", True)
        got = await service.PullMessages({"MessageLimit": 100, "Timeout": dt.timedelta(seconds=5)})
        topics = [m.Topic._value_1 for m in got.NotificationMessage]
        assert topics == [
            "tns1:VideoSource/GlobalSceneChange/ImagingService",
            "tns1:RuleEngine/TamperDetector/Tamper",
        ]
        await manager.shutdown()
        assert onvif_server._servers[id(cam)].events.subscriptions == {}
    finally:
        await client.close()


def test_a_camera_inventing_input_tokens_cannot_grow_the_state() -> None:
    state = ChannelState()
    for i in range(1000):
        note = Notification(
            topic="Device/Trigger/DigitalInput",
            source={"InputToken": f"DI_{i}"},
            data={"LogicalState": "true"},
        )
        signal = classify(note)
        assert signal is not None
        state.apply(signal)
    assert len(state.active) == 64
    off = classify(
        Notification(
            topic="Device/Trigger/DigitalInput",
            source={"InputToken": "DI_3"},
            data={"LogicalState": "false"},
        )
    )
    assert off is not None and state.apply(off) == "end" and len(state.active) == 63


def test_camera_alarms_trigger_event_recording_but_status_events_do_not() -> None:
    from gateway.recorder.service import is_trigger

    for kind in ("camera_motion", "tamper", "input", "motion"):
        assert is_trigger(Event(camera="cam-01", type=kind)), kind
    for kind in ("camera_offline", "camera_online", "linkage"):
        assert not is_trigger(Event(camera="cam-01", type=kind)), kind


async def test_open_alarms_end_when_the_subscription_is_lost_and_reopen_after(
    served, part_factory
) -> None:
    cam = await served()
    part, gw = await part_factory([camera_record(cam)], cam.password, pull_timeout_s=2)
    await wait_for(lambda: part.states["cam-01"].state == "subscribed", 10, "a subscription")
    await asyncio.sleep(0.3)
    cam.set_alarm("tamper", True)
    first = await wait_for(lambda: events_of(gw, "tamper"), 5, "tamper")
    cam.set_fault("offline")
    await onvif_server.set_online(cam, False)
    ended = await wait_for(
        lambda: [e for e in events_of(gw, "tamper") if e.end is not None], 15, "tamper ended"
    )
    assert ended[0].id == first[0].id and ended[0].data["ended_by"] == "subscription lost"
    cam.set_fault("online")
    await onvif_server.set_online(cam, True)
    # The camera still says tamper: the new subscription's Initialized state opens a new one.
    reopened = await wait_for(
        lambda: [e for e in events_of(gw, "tamper") if e.id != first[0].id], 20, "tamper again"
    )
    assert reopened[0].end is None
    await part.stop()
    closed = [e for e in events_of(gw, "tamper") if e.id == reopened[0].id and e.end is not None]
    assert closed and closed[0].data["ended_by"] == "stopped"


def events_schema(tmp: Path) -> Any:
    """The events service's message schema (and WS-BaseNotification's) from the bundled WSDL."""
    import onvif
    from lxml import etree

    wsdl_dir = Path(onvif.__file__).parent / "wsdl"
    xs = "http://www.w3.org/2001/XMLSchema"
    schema = etree.parse(str(wsdl_dir / "events.wsdl")).find(f".//{{{xs}}}schema")
    for imp in schema.iter(f"{{{xs}}}import"):
        location = imp.get("schemaLocation", "")
        if location.startswith("./"):
            imp.set("schemaLocation", (wsdl_dir / location[2:]).as_uri())
    (tmp / "events.xsd").write_bytes(etree.tostring(schema))
    ns = schema.get("targetNamespace")
    b2 = (wsdl_dir / "b-2.xsd").as_uri()
    (tmp / "all.xsd").write_text(
        f'<xs:schema xmlns:xs="{xs}"><xs:import namespace="{ns}" '
        f'schemaLocation="{(tmp / "events.xsd").as_uri()}"/>'
        f'<xs:import namespace="http://docs.oasis-open.org/wsn/b-2" schemaLocation="{b2}"/>'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.parse(str(tmp / "all.xsd")))


async def test_every_events_response_validates_against_the_onvif_schemas(served, tmp_path) -> None:
    import httpx
    from lxml import etree

    from tests.test_sim_onvif import ENV, soap, username_token

    schema = events_schema(tmp_path)
    cam = await served()
    tev, wsnt = "http://www.onvif.org/ver10/events/wsdl", "http://docs.oasis-open.org/wsn/b-2"

    async def call(http: httpx.AsyncClient, url: str, body: str) -> Any:
        r = await http.post(url, content=soap(body, username_token("admin", cam.password)))
        assert r.status_code == 200, r.text
        response = etree.fromstring(r.content).find(f"{{{ENV}}}Body")[0]
        assert schema.validate(etree.ElementTree(response)), (body, str(schema.error_log))
        return response

    events_url = f"http://{cam.address}:{cam.http_port}/onvif/event_service"
    async with httpx.AsyncClient() as http:
        await call(http, events_url, f'<GetServiceCapabilities xmlns="{tev}"/>')
        created = await call(
            http,
            events_url,
            f'<CreatePullPointSubscription xmlns="{tev}"><InitialTerminationTime>PT60S'
            "</InitialTerminationTime></CreatePullPointSubscription>",
        )
        address = created.find(".//{http://www.w3.org/2005/08/addressing}Address").text
        cam.set_alarm("input", True)
        pulled = await call(
            http,
            address,
            f'<PullMessages xmlns="{tev}"><Timeout>PT1S</Timeout><MessageLimit>50</MessageLimit>'
            "</PullMessages>",
        )
        assert len(pulled.findall(f"{{{wsnt}}}NotificationMessage")) == 6  # 5 initial + input
        await call(http, address, f'<SetSynchronizationPoint xmlns="{tev}"/>')
        await call(
            http,
            address,
            f'<Renew xmlns="{wsnt}"><TerminationTime>PT60S</TerminationTime></Renew>',
        )
        await call(http, address, f'<Unsubscribe xmlns="{wsnt}"/>')
    # The check has teeth: a subscription reply without its required CurrentTime fails.
    bad = etree.fromstring(
        f'<tev:CreatePullPointSubscriptionResponse xmlns:tev="{tev}" xmlns:wsnt="{wsnt}" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"><tev:SubscriptionReference>'
        "<wsa:Address>http://x/</wsa:Address></tev:SubscriptionReference>"
        "<wsnt:TerminationTime>2030-01-01T00:00:00Z</wsnt:TerminationTime>"
        "</tev:CreatePullPointSubscriptionResponse>"
    )
    assert not schema.validate(etree.ElementTree(bad))
