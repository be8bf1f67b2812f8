"""Acceptance through a three-level tree of real processes (city ← town ← village), the city
joined to SIPp as its upper platform: a village camera going offline reaches the platform
as a catalog NOTIFY (Event OFF, the camera's channel id) on the platform's Catalog
subscription, measured from the fault and from the moment the village itself saw it. The
platform's DeviceControl for another village camera goes through the cascade: PTZCmd moves
and stops it, presets 0x81/0x82/0x83 set, go to and delete ONVIF presets (all read back
from the simulator's own ONVIF PTZ service); a wrong checksum is refused with 400, an
unknown channel with 404, RecordCmd answered ERROR, GuardCmd OK. That camera's own ONVIF motion
and tamper events arrive as Alarm MESSAGEs with its channel id and the standard's codes.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.gb28181 import ptzcmd
from tests.cascade_support import all_cameras, start_levels, wait_for
from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, SIPP_DIR, Sipp, free_port
from tests.test_plans_api import _absolute, _pan, _ptz

pytestmark = pytest.mark.slow
CAM = "town-a/village-1/cam-01"
PTZ_CAM = "town-a/village-1/cam-02"


def _channel_id(gw: Any, path: str) -> str | None:
    conn = sqlite3.connect(f"file:{gw.data_dir / 'gateway.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute(
            "SELECT gb_id FROM gb28181_ids WHERE key = ?", (f"camera:{path}",)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None


def _text(path: Path) -> str:
    return path.read_bytes().decode("gb18030", "replace") if path.exists() else ""


def test_a_village_camera_going_offline_reaches_the_platform_as_a_notify(
    tmp_path: Path, gateway_factory: Any, sim_factory: Any
) -> None:
    sim = sim_factory(
        *("--cameras", "2", "--base", "127.0.113.1", "--size", "320x180", "--fps", "25"),
        *("--gop", "25", "--no-wsd"),
        name="village-sim",
    )
    rtsp_cam, ptz_cam = sim.cameras
    url = f"rtsp://admin:admin@{rtsp_cam['address']}:{rtsp_cam['rtsp_port']}/main"
    onvif = {
        "host": ptz_cam["address"],
        "port": ptz_cam["http_port"],
        "username": ptz_cam["username"],
        "password": ptz_cam["password"],
    }
    platform_port, sip_port = free_port(), free_port()
    ooc = str(SIPP_DIR / "gb_platform_ooc.xml")
    registrar = Sipp("gb_platform_ooc.xml", tmp_path, port=platform_port)
    platforms = [registrar]
    try:
        upstream = {
            "id": "city-platform",
            "server_id": SERVER_ID,
            "domain": DOMAIN,
            "host": HOST,
            "port": platform_port,
            "device_id": DEVICE_ID,
            "password": "pw",
            "local_host": HOST,
            "local_port": sip_port,
            "keepalive_s": 2,
            "keepalive_misses": 5,
            "civil_code": "340200",
        }
        lv = start_levels(
            gateway_factory,
            village_extra={
                "cameras": [
                    {"id": "cam-01", "name": "村口", "rtsp_url": url},
                    {
                        "id": "cam-02",
                        "name": "路口",
                        "onvif": onvif,
                        "motion": {"source": "camera"},
                    },
                ],
                "discovery": {"interval_s": 0},
            },
            city_extra={"gb28181": {"upstream": [upstream], "sip_t1_s": 0.05}},
        )

        def tree_at_city() -> dict[str, dict[str, Any]]:
            return all_cameras(lv.city.client.get("/api/v1/tree").json())

        def ready() -> bool:
            cams = tree_at_city()
            events = lv.village.client.get("/api/v1/cameras/cam-02").json().get("camera_events")
            state = lv.city.client.get("/api/v1/gb28181/upstream/city-platform").json()
            return bool(
                cams.get(CAM, {}).get("status") == "online"
                and cams.get(PTZ_CAM, {}).get("ptz")
                and (events or {}).get("state") == "subscribed"
                and state["status"]["state"] == "online"
            )

        # Something keeps cam-01's stream open (its motion detector), so its loss is seen at
        # once; a snapshot proves the stream runs (the village may still be connecting).
        wait_for(
            lambda: (
                lv.village.client.get("/api/v1/tree/cameras/cam-01/snapshot.jpg").status_code == 200
            ),
            30,
            "a snapshot of cam-01 at the village",
        )
        wait_for(ready, 60, "both village cameras at the city, the city registered to SIPp")
        channel = wait_for(lambda: _channel_id(lv.city, CAM), 20, "the camera's channel id")
        ptz_channel = wait_for(lambda: _channel_id(lv.city, PTZ_CAM), 20, "the PTZ channel id")
        assert channel[10:13] == "132" and channel[:6] == "340200"

        # The platform subscribes to the city's catalog (same port: it is one platform).
        registrar.stop()
        trace = tmp_path / "subscribe.msgs"
        subscriber = Sipp(
            "gb_platform_subscribe.xml",
            tmp_path,
            *("-oocsf", ooc, "-key", "device", DEVICE_ID, "-key", "server", SERVER_ID),
            *("-key", "event", "Catalog", "-key", "expires", "600"),
            *("-m", "1", "-trace_msg", "-message_file", str(trace)),
            f"{HOST}:{sip_port}",
            port=platform_port,
        )
        platforms.append(subscriber)
        wait_for(lambda: "CSeq: 1 SUBSCRIBE" in _text(trace), 10, "the SUBSCRIBE sent")
        wait_for(
            lambda: any(
                "SIP/2.0 200 OK" in m and "CSeq: 1 SUBSCRIBE" in m
                for m in _text(trace).split("\n-----")
            ),
            10,
            "the subscription accepted",
        )
        time.sleep(1.5)  # the city's change watcher has seen the tree since

        sim.fault(rtsp_cam["id"], "offline")
        t0 = time.monotonic()

        def village_says_offline() -> bool:
            r = lv.village.client.get("/api/v1/cameras/cam-01")
            return r.json()["status"] == "offline"

        wait_for(village_says_offline, 30, "the camera offline at the village", 0.05)
        t_village = time.monotonic()
        wait_for(
            lambda: re.search(rf"{channel}</DeviceID>\s*<Event>OFF</Event>", _text(trace)),
            30,
            "the OFF NOTIFY at the platform",
            0.05,
        )
        t_platform = time.monotonic()
        assert subscriber.wait(30) == 0, subscriber.errors()[-2000:]
        print(
            f"camera offline → platform NOTIFY: {(t_platform - t0) * 1000:.0f} ms after the"
            f" fault, {(t_platform - t_village) * 1000:.0f} ms after the village saw it"
        )
        assert t_platform - t_village < 5.0, "the NOTIFY took more than 5 s from the village"
        notify = re.search(r"NOTIFY sip:.*?</Notify>", _text(trace), re.S)
        assert notify and "Event: Catalog;id=7" in notify.group(0)
        assert "Subscription-State: active" in notify.group(0)

        # The other village camera, controlled by the platform through city → town → village.
        alarms = tmp_path / "platform.msgs"
        platform = Sipp(
            "gb_platform_ooc.xml",
            tmp_path,
            *("-trace_msg", "-message_file", str(alarms)),
            port=platform_port,
        )
        platforms.append(platform)
        sns = iter(range(100, 200))

        def control(element: str, to: str = ptz_channel) -> str:
            log = tmp_path / f"control-{time.monotonic_ns()}.msgs"
            sipp = Sipp(
                "gb_platform_control.xml",
                tmp_path,
                *("-key", "channel", to, "-key", "server", SERVER_ID),
                *("-key", "sn", str(next(sns)), "-key", "control", element),
                *("-m", "1", "-trace_msg", "-message_file", str(log)),
                f"{HOST}:{sip_port}",
            )
            try:
                assert sipp.wait(30) == 0, sipp.errors()[-2000:]
            finally:
                sipp.stop()
            status = re.search(r"SIP/2\.0 (\d{3})", _text(log))
            assert status, _text(log)[-2000:]
            return status.group(1)

        # Continuous move right, then stop: the camera's pan rises, then holds.
        _ptz(ptz_cam, _absolute(-0.8, 0.0))
        wait_for(lambda: abs(_pan(ptz_cam) + 0.8) < 0.01, 10, "the PTZ camera at pan -0.8")
        t_ptz = time.monotonic()
        assert control(f"<PTZCmd>{ptzcmd.build(0x01, 0x40)}</PTZCmd>") == "200"
        wait_for(lambda: _pan(ptz_cam) > -0.7, 15, "the village camera panning right")
        took = (time.monotonic() - t_ptz) * 1000
        print(f"PTZCmd right: village camera seen moving {took:.0f} ms after SIPp started")
        assert control("<PTZCmd>A50F0100000000B5</PTZCmd>") == "200"
        time.sleep(0.5)
        held = _pan(ptz_cam)
        time.sleep(0.7)
        assert abs(_pan(ptz_cam) - held) < 0.01 and held < 0.99, "the camera kept moving"

        # Presets (预置位): set 5 here, move away, go to 5, delete 5 — ONVIF presets below.
        _ptz(ptz_cam, _absolute(0.5, 0.25))
        wait_for(lambda: abs(_pan(ptz_cam) - 0.5) < 0.01, 10, "the camera at pan 0.5")
        assert control(f"<PTZCmd>{ptzcmd.build(0x81, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: "gb-5" in _presets(ptz_cam), 15, "preset gb-5 stored in the camera")
        _ptz(ptz_cam, _absolute(0.0, 0.0))
        wait_for(lambda: abs(_pan(ptz_cam)) < 0.01, 10, "the camera back at 0")
        assert control(f"<PTZCmd>{ptzcmd.build(0x82, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: abs(_pan(ptz_cam) - 0.5) < 0.01, 15, "the camera at preset 5")
        assert control(f"<PTZCmd>{ptzcmd.build(0x83, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: "gb-5" not in _presets(ptz_cam), 15, "preset gb-5 deleted")

        # Refused: a wrong checksum (nothing moves), an unknown channel; TeleBoot and
        # RecordCmd are not supported here (RecordCmd says so: Result ERROR).
        before = _pan(ptz_cam)
        assert control("<PTZCmd>A50F0101FF0000B6</PTZCmd>") == "400"
        assert control("<PTZCmd>A50F0100000000B5</PTZCmd>", ptz_channel[:-6] + "999999") == "404"
        assert control("<TeleBoot>Boot</TeleBoot>") == "200"
        assert control("<RecordCmd>Record</RecordCmd>") == "200"
        assert control("<GuardCmd>SetGuard</GuardCmd>") == "200"  # 布防: alarms on (they are)
        answers = wait_for(
            lambda: len(_bodies(alarms, "DeviceControl")) >= 2 and _bodies(alarms, "DeviceControl"),
            10,
            "the DeviceControl responses",
        )
        assert sorted(re.findall(r"<Result>(\w+)</Result>", "".join(answers))) == ["ERROR", "OK"]
        assert abs(_pan(ptz_cam) - before) < 0.01

        # The camera's own motion and tamper events: Alarm MESSAGEs from the city.
        t_alarm = time.monotonic()
        sim.motion(ptz_cam["id"], True)
        motion = wait_for(
            lambda: [a for a in _bodies(alarms, "Alarm") if "<AlarmType>2<" in a],
            30,
            "the village camera's motion alarm at the platform",
        )
        print(f"village motion alarm at the platform {time.monotonic() - t_alarm:.1f} s after")
        sim.motion(ptz_cam["id"], False)
        httpx.post(
            f"{sim.control}/cameras/{ptz_cam['id']}/alarm",
            json={"kind": "tamper", "on": True},
            timeout=5,
        ).raise_for_status()
        tamper = wait_for(
            lambda: [a for a in _bodies(alarms, "Alarm") if "<AlarmType>11<" in a], 30, "tamper"
        )
    finally:
        for p in platforms:
            p.stop()
    for alarm in (motion[0], tamper[0]):
        assert f"<DeviceID>{ptz_channel}</DeviceID>" in alarm
        assert "<AlarmMethod>5</AlarmMethod>" in alarm
        assert re.search(r"<AlarmTime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d</AlarmTime>", alarm)


def _bodies(trace: Path, cmd: str) -> list[str]:
    """The Notify/Response bodies of ``cmd`` the platform received."""
    pattern = r"<(?:Notify|Response)>.*?</(?:Notify|Response)>"
    return [b for b in re.findall(pattern, _text(trace), re.S) if f"<CmdType>{cmd}<" in b]


def _presets(cam: dict[str, Any]) -> dict[str, str]:
    return {str(p.Name): str(p.token) for p in _ptz(cam, ("GetPresets", {})) or []}
