"""SUBSCRIBE/NOTIFY and alarms with SIPp as the upper platform (in-process part, real bus):
a Catalog subscription gets 200 with Expires and a NOTIFY when a camera goes offline, is
refreshed and ended with Expires: 0 (last NOTIFY terminated); without a subscription a
change comes as a Catalog MESSAGE; a motion event arrives as an Alarm NOTIFY to an alarm
subscription, and as a MESSAGE without one; an alarm raised while the platform is down is
held and delivered once it is back; a disarmed channel (GuardCmd) reports nothing until armed;
each platform gets the alarms of the cameras it shares. Hostile SUBSCRIBEs get SIP errors."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.gb28181.part import Gb28181Part
from gateway.gb28181.sip.message import SipMessage
from gateway.store.db import Database
from tests.gb28181_support import (
    DEVICE_ID,
    HOST,
    SERVER_ID,
    SIPP_DIR,
    Sipp,
    free_port,
    settings,
    upstream,
    wait_for,
)
from tests.test_gb28181_calls import RawPlatform

OOC = str(SIPP_DIR / "gb_platform_ooc.xml")


class Tree:
    """A town with one camera and two villages; statuses changed by the test."""

    def __init__(self) -> None:
        self.status = {"cam-01": "online", "village-1/cam-1": "online", "village-2/cam-1": "online"}

    def __call__(self) -> GatewayNode:
        villages = [
            GatewayNode(
                id=f"village-{v}",
                path=f"village-{v}",
                name=f"{v}村",
                status="online",
                cameras=[
                    CameraNode(
                        id="cam-1",
                        path=f"village-{v}/cam-1",
                        name=f"{v}村 摄像机",
                        status=self.status[f"village-{v}/cam-1"],  # type: ignore[arg-type]
                    )
                ],
            )
            for v in (1, 2)
        ]
        return GatewayNode(
            id="town",
            name="城关镇",
            status="online",
            cameras=[
                CameraNode(id="cam-01", path="cam-01", name="镇政府", status=self.status["cam-01"])  # type: ignore[arg-type]
            ],
            children=villages,
        )


def _bodies(trace: Path, cmd: str) -> list[str]:
    text = trace.read_bytes().decode("gb18030", "replace") if trace.exists() else ""
    return [b for b in re.findall(r"<Notify>.*?</Notify>", text, re.S) if f">{cmd}<" in b]


async def _run(sipp: Sipp, timeout: float) -> None:
    rc = await asyncio.to_thread(sipp.wait, timeout)
    assert rc == 0, sipp.errors()[-2000:] + sipp.log.read_text(errors="replace")[-2000:]


async def test_catalog_subscription_notifies_a_camera_going_offline_then_ends(
    tmp_path: Path,
) -> None:
    tree = Tree()
    platform_port = free_port()
    part = Gb28181Part(
        settings(upstream(platform_port, keepalive_s=1, keepalive_misses=3)),
        db=Database(tmp_path / "gw.db"),
        tree=tree,
        media=None,
        changes_s=0.2,
    )
    await part.start()
    client = part.clients["county"]
    cam = next(c for c in client.directory.channels() if c.camera_path == "village-2/cam-1")
    trace = tmp_path / "subscribe.log"
    sipp = Sipp(
        "gb_platform_subscribe.xml",
        tmp_path,
        *("-oocsf", OOC, "-key", "device", DEVICE_ID, "-key", "server", SERVER_ID),
        *("-key", "event", "Catalog", "-key", "expires", "60"),
        *("-m", "1", "-trace_msg", "-message_file", str(trace)),
        f"{HOST}:{client.agent.local_port}",
        port=platform_port,
    )
    try:
        await wait_for(lambda: client.state == "online", 20, "registered to SIPp")
        await wait_for(lambda: bool(client.subscriptions.subs), 20, "the catalog subscription")
        (sub,) = client.subscriptions.subs.values()
        assert sub.kind == "Catalog" and sub.target.endswith(f":{platform_port}")
        assert client.status()["subscriptions"] == ["Catalog"]
        await wait_for(lambda: part.changes.watching(client), 10, "the watcher's baseline")
        tree.status["village-2/cam-1"] = "offline"
        t0 = time.monotonic()
        await _run(sipp, 30)
        took = time.monotonic() - t0
    finally:
        sipp.stop()
    print(f"catalog OFF NOTIFY, refresh and unsubscribe done {took * 1000:.0f} ms after the change")
    assert took < 10
    text = trace.read_text(errors="replace")
    assert re.search(r"SIP/2.0 200 OK.*?Expires: 60", text, re.S)
    (notify,) = [b for b in _bodies(trace, "Catalog") if "<Event>OFF</Event>" in b]
    assert f"<DeviceID>{cam.gb_id}</DeviceID>" in notify and "<SumNum>1</SumNum>" in notify
    assert "Subscription-State: terminated" in text and "Event: Catalog;id=7" in text
    assert client.subscriptions.subs == {}

    # No subscription now: the next change comes as a Catalog MESSAGE (Notify body).
    trace2 = tmp_path / "uas.log"
    uas = Sipp(
        "gb_platform_ooc.xml",
        tmp_path,
        *("-trace_msg", "-message_file", str(trace2)),
        port=platform_port,
    )
    try:
        await asyncio.sleep(0.3)
        tree.status["village-2/cam-1"] = "online"
        await wait_for(lambda: client.subscriptions.sent_message >= 1, 20, "a Catalog MESSAGE")
        await wait_for(lambda: bool(_bodies(trace2, "Catalog")), 10, "the MESSAGE in the trace")
    finally:
        uas.stop()
        await part.stop()
    (message,) = _bodies(trace2, "Catalog")
    assert f"<DeviceID>{cam.gb_id}</DeviceID>" in message and "<Event>ON</Event>" in message


async def test_alarms_reach_a_subscription_and_are_held_while_the_platform_is_down(
    tmp_path: Path,
) -> None:
    tree = Tree()
    db = Database(tmp_path / "gw.db")
    bus = EventBus(db)
    platform_port = free_port()
    part = Gb28181Part(
        settings(upstream(platform_port, keepalive_s=1, keepalive_misses=2)),
        db=db,
        tree=tree,
        media=None,
        bus=bus,
        changes_s=0.2,
    )
    await part.start()
    client = part.clients["county"]
    cam = next(c for c in client.directory.channels() if c.camera_path == "village-1/cam-1")
    trace = tmp_path / "alarm-sub.log"
    sipp = Sipp(
        "gb_platform_subscribe.xml",
        tmp_path,
        *("-oocsf", OOC, "-key", "device", DEVICE_ID, "-key", "server", SERVER_ID),
        *("-key", "event", "Alarm", "-key", "expires", "120"),
        *("-m", "1", "-trace_msg", "-message_file", str(trace)),
        f"{HOST}:{client.agent.local_port}",
        port=platform_port,
    )
    try:
        await wait_for(lambda: client.state == "online", 20, "registered to SIPp")
        await wait_for(lambda: bool(client.subscriptions.subs), 20, "the alarm subscription")
        await asyncio.to_thread(bus.publish, Event(camera="village-1/cam-1", type="motion"))
        # Not ours to send: an ended event, a type without a GB code, a camera not shared.
        await asyncio.to_thread(bus.publish, Event(camera="cam-01", type="camera_online"))
        await _run(sipp, 30)
    finally:
        sipp.stop()
    (alarm,) = _bodies(trace, "Alarm")
    assert f"<DeviceID>{cam.gb_id}</DeviceID>" in alarm
    assert "<AlarmMethod>5</AlarmMethod>" in alarm and "<AlarmType>2</AlarmType>" in alarm
    assert "<AlarmPriority>3</AlarmPriority>" in alarm
    assert re.search(r"<AlarmTime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d</AlarmTime>", alarm)
    assert part.alarms.delivered == 1 and client.subscriptions.sent_notify >= 1

    # The platform is gone: a tamper alarm is held, retried, and delivered when it is back.
    await asyncio.to_thread(bus.publish, Event(camera="cam-01", type="tamper"))
    await asyncio.sleep(3.0)
    assert part.alarms.delivered == 1 and part.describe("county")["status"]["alarms_held"] == 1
    trace2 = tmp_path / "alarm-msg.log"
    uas = Sipp(
        "gb_platform_ooc.xml",
        tmp_path,
        *("-trace_msg", "-message_file", str(trace2)),
        port=platform_port,
    )
    try:
        t0 = time.monotonic()
        await wait_for(lambda: part.alarms.delivered == 2, 40, "the held alarm delivered")
        print(f"held alarm delivered {time.monotonic() - t0:.1f} s after the platform came back")
        await wait_for(lambda: bool(_bodies(trace2, "Alarm")), 10, "the alarm in the trace")
    finally:
        uas.stop()
        await part.stop()
    (held,) = _bodies(trace2, "Alarm")
    own = next(c for c in client.directory.channels() if c.camera_path == "cam-01")
    assert f"<DeviceID>{own.gb_id}</DeviceID>" in held and "<AlarmType>11</AlarmType>" in held
    assert part.alarms.held("county") == 0 and part.alarms.dropped == 0


async def test_hostile_subscribes_get_sip_errors(tmp_path: Path) -> None:
    part = Gb28181Part(
        settings(upstream(free_port())), db=Database(tmp_path / "gw.db"), tree=Tree(), media=None
    )
    await part.start()
    client = part.clients["county"]
    raw = RawPlatform((HOST, client.agent.local_port))
    try:

        def subscribe(body: bytes, expires: str = "60") -> int:
            raw.n += 1
            port = raw.sock.getsockname()[1]
            msg = SipMessage(method="SUBSCRIBE", uri=f"sip:{DEVICE_ID}@3402000000")
            msg.add("Via", f"SIP/2.0/UDP {HOST}:{port};branch=z9hG4bKsub{raw.n}")
            msg.add("From", f"<sip:{SERVER_ID}@3402000000>;tag=raw")
            msg.add("To", f"<sip:{DEVICE_ID}@3402000000>")
            msg.add("Call-ID", f"sub-{raw.n}")
            msg.add("CSeq", f"{raw.n} SUBSCRIBE")
            msg.add("Event", "Catalog")
            msg.add("Expires", expires)
            msg.add("Content-Type", "Application/MANSCDP+xml")
            msg.body = body
            return raw.send(msg.to_bytes()).status

        query = b"<Query><CmdType>%s</CmdType><SN>1</SN><DeviceID>x</DeviceID></Query>"
        assert await asyncio.to_thread(subscribe, query % b"MobilePosition") == 489
        assert await asyncio.to_thread(subscribe, b"<Query><CmdType>Catalog") == 400
        assert await asyncio.to_thread(subscribe, query % b"Catalog", "-5") == 400
        assert await asyncio.to_thread(subscribe, query % b"Catalog", "0") == 481
        ok = [await asyncio.to_thread(subscribe, query % b"Catalog") for _ in range(20)]
        assert ok.count(200) == 16 and ok.count(503) == 4  # bounded per platform
    finally:
        raw.sock.close()
        await part.stop()


async def test_a_disarmed_channel_reports_no_alarms_until_armed_again(tmp_path: Path) -> None:
    tree = Tree()
    db = Database(tmp_path / "gw.db")
    bus = EventBus(db)
    platform_port = free_port()
    part = Gb28181Part(
        settings(upstream(platform_port, keepalive_s=1, keepalive_misses=3)),
        db=db,
        tree=tree,
        media=None,
        bus=bus,
    )
    await part.start()
    client = part.clients["county"]
    by_path = {c.camera_path: c.gb_id for c in client.directory.channels() if c.camera_path}
    trace = tmp_path / "platform.msgs"
    platform = Sipp(
        "gb_platform_ooc.xml",
        tmp_path,
        "-trace_msg",
        "-message_file",
        str(trace),
        port=platform_port,
    )

    async def control(channel: str, element: str) -> None:
        sipp = Sipp(
            "gb_platform_control.xml",
            tmp_path,
            *("-key", "channel", channel, "-key", "server", SERVER_ID, "-key", "sn", "41"),
            *("-key", "control", element, "-m", "1"),
            f"{HOST}:{client.agent.local_port}",
        )
        try:
            await _run(sipp, 30)
        finally:
            sipp.stop()

    def alarms_of(path: str) -> list[str]:
        return [b for b in _bodies(trace, "Alarm") if f"<DeviceID>{by_path[path]}<" in b]

    try:
        await wait_for(lambda: client.state == "online", 20, "registered to SIPp")
        await control(by_path["village-1/cam-1"], "<GuardCmd>ResetGuard</GuardCmd>")  # 撤防
        await wait_for(lambda: bool(client.control.disarmed), 10, "the channel disarmed")
        # Alarms go out in order: once the armed camera's is there, the other was skipped.
        for path in ("village-1/cam-1", "village-2/cam-1"):
            await asyncio.to_thread(bus.publish, Event(camera=path, type="motion"))
        await wait_for(lambda: bool(alarms_of("village-2/cam-1")), 20, "the armed camera's alarm")
        assert alarms_of("village-1/cam-1") == [] and part.alarms.disarmed == 1
        await control(by_path["village-1/cam-1"], "<GuardCmd>SetGuard</GuardCmd>")  # 布防
        await wait_for(lambda: not client.control.disarmed, 10, "the channel armed again")
        await asyncio.to_thread(bus.publish, Event(camera="village-1/cam-1", type="linkage"))
        await wait_for(lambda: bool(alarms_of("village-1/cam-1")), 20, "the re-armed alarm")
        await wait_for(lambda: len(_responses(trace)) == 2, 10, "both GuardCmd responses")
    finally:
        platform.stop()
        await part.stop()
    (linkage,) = alarms_of("village-1/cam-1")
    assert "<AlarmMethod>7</AlarmMethod>" in linkage and "<AlarmType>" not in linkage
    assert all("<Result>OK</Result>" in r and "<SN>41</SN>" in r for r in _responses(trace))


def _responses(trace: Path) -> list[str]:
    text = trace.read_bytes().decode("gb18030", "replace") if trace.exists() else ""
    return [r for r in re.findall(r"<Response>.*?</Response>", text, re.S) if "DeviceControl" in r]


async def test_each_platform_gets_the_alarms_of_the_cameras_it_shares(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    bus = EventBus(db)
    county_port, city_port = free_port(), free_port()
    part = Gb28181Part(
        settings(
            upstream(county_port),
            upstream(city_port, id="city", share=["village-2/*"]),
        ),
        db=db,
        tree=Tree(),
        media=None,
        bus=bus,
    )
    await part.start()
    directories = {uid: c.directory for uid, c in part.clients.items()}
    traces = {uid: tmp_path / f"{uid}.msgs" for uid in ("county", "city")}
    sipps = [
        Sipp("gb_platform_ooc.xml", tmp_path, "-trace_msg", "-message_file", str(trace), port=port)
        for trace, port in ((traces["county"], county_port), (traces["city"], city_port))
    ]
    try:
        for client in part.clients.values():
            await wait_for(lambda c=client: c.state == "online", 20, f"{client.cfg.id} online")
        for path in ("village-1/cam-1", "village-2/cam-1"):
            await asyncio.to_thread(bus.publish, Event(camera=path, type="camera_motion"))
        await wait_for(lambda: part.alarms.delivered == 3, 20, "three alarms delivered")
    finally:
        for sipp in sipps:
            sipp.stop()
        await part.stop()

    def channels(uid: str) -> set[str]:
        return {
            c.camera_path
            for c in directories[uid].channels()
            for body in _bodies(traces[uid], "Alarm")
            if c.camera_path and f"<DeviceID>{c.gb_id}</DeviceID>" in body
        }

    assert channels("county") == {"village-1/cam-1", "village-2/cam-1"}
    assert channels("city") == {"village-2/cam-1"}
