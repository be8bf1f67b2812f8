"""The platform (SIPp) controls a simulated ONVIF camera through a real ``gateway run`` and gets
its alarms: DeviceControl PTZCmd moves and stops it, presets 0x81/0x82/0x83 set, go to and
delete ONVIF presets (all read back from the simulator's own ONVIF PTZ service); a wrong
checksum is refused with 400, an unknown channel with 404, TeleBoot answered ERROR; the
camera's own tamper and motion events (ONVIF PullPoint) arrive as Alarm MESSAGEs with the
camera's channel id and the standard's codes."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.gb28181 import ptzcmd
from tests.cascade_support import wait_for
from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, Sipp, free_port
from tests.support import small_sim_args
from tests.test_plans_api import _absolute, _pan, _ptz


def _upstream(platform_port: int, sip_port: int) -> dict[str, Any]:
    return {
        "id": "county",
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


def _channel_id(gw: Any, key: str) -> str | None:
    conn = sqlite3.connect(f"file:{gw.data_dir / 'gateway.db'}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT gb_id FROM gb28181_ids WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None  # the table is not made yet
    finally:
        conn.close()
    return str(row[0]) if row else None


def _notifies(trace: Path, cmd: str) -> list[str]:
    text = trace.read_bytes().decode("gb18030", "replace") if trace.exists() else ""
    return [
        b
        for b in re.findall(r"<(?:Notify|Response)>.*?</(?:Notify|Response)>", text, re.S)
        if f"<CmdType>{cmd}</CmdType>" in b
    ]


def _presets(cam: dict[str, Any]) -> dict[str, str]:
    return {str(p.Name): str(p.token) for p in _ptz(cam, ("GetPresets", {})) or []}


def test_platform_ptz_presets_and_camera_alarms(
    tmp_path: Path, gateway_factory: Any, sim_factory: Any
) -> None:
    sim = sim_factory(*small_sim_args("127.0.112.1"), name="gb-ptz-sim")
    cam = sim.cameras[0]
    onvif = {
        "host": cam["address"],
        "port": cam["http_port"],
        "username": cam["username"],
        "password": cam["password"],
    }
    platform_port, sip_port = free_port(), free_port()
    trace = tmp_path / "platform.msgs"
    platform = Sipp(
        "gb_platform_ooc.xml",
        tmp_path,
        *("-trace_msg", "-message_file", str(trace)),
        port=platform_port,
    )
    try:
        gw = gateway_factory(
            {
                "cameras": [
                    {"id": "cam-01", "name": "村口", "onvif": onvif, "motion": {"source": "camera"}}
                ],
                "discovery": {"interval_s": 0},
                "recording": {"mode": "off"},
                "gb28181": {"upstream": [_upstream(platform_port, sip_port)], "sip_t1_s": 0.05},
            }
        )

        def ready() -> bool:
            cam_state = gw.client.get("/api/v1/cameras/cam-01").json()
            up = gw.client.get("/api/v1/gb28181/upstream/county").json()
            events = cam_state.get("camera_events") or {}
            return bool(
                cam_state.get("ptz")
                and events.get("state") == "subscribed"
                and up["status"]["state"] == "online"
            )

        wait_for(ready, 40, "PTZ known, camera events subscribed, registered to SIPp")
        channel = wait_for(lambda: _channel_id(gw, "camera:cam-01"), 20, "the channel id")
        n = iter(range(100, 200))

        def control(element: str) -> str:
            log = tmp_path / f"control-{time.monotonic_ns()}.msgs"
            sipp = Sipp(
                "gb_platform_control.xml",
                tmp_path,
                *("-key", "channel", channel, "-key", "server", SERVER_ID),
                *("-key", "sn", str(next(n)), "-key", "control", element),
                *("-m", "1", "-trace_msg", "-message_file", str(log)),
                f"{HOST}:{sip_port}",
            )
            try:
                assert sipp.wait(30) == 0, sipp.errors()[-2000:]
            finally:
                sipp.stop()
            status = re.search(r"SIP/2\.0 (\d{3})", log.read_text(errors="replace"))
            assert status, log.read_text(errors="replace")[-2000:]
            return status.group(1)

        # Continuous move right, then stop: the camera's pan rises, then holds.
        _ptz(cam, _absolute(-0.8, 0.0))
        wait_for(lambda: abs(_pan(cam) + 0.8) < 0.01, 10, "the camera at pan -0.8")
        t0 = time.monotonic()
        assert control(f"<PTZCmd>{ptzcmd.build(0x01, 0x80)}</PTZCmd>") == "200"
        wait_for(lambda: _pan(cam) > -0.7, 10, "the camera panning right")
        took = (time.monotonic() - t0) * 1000
        print(f"PTZCmd right: camera seen moving {took:.0f} ms after SIPp started (upper bound)")
        assert control("<PTZCmd>A50F0100000000B5</PTZCmd>") == "200"
        time.sleep(0.3)
        held = _pan(cam)
        time.sleep(0.7)
        assert abs(_pan(cam) - held) < 0.01 and held < 0.99, "the camera kept moving"

        # Presets: set 5 here, move away, go to 5, delete 5.
        _ptz(cam, _absolute(0.5, 0.25))
        wait_for(lambda: abs(_pan(cam) - 0.5) < 0.01, 10, "the camera at pan 0.5")
        assert control(f"<PTZCmd>{ptzcmd.build(0x81, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: "gb-5" in _presets(cam), 10, "preset gb-5 stored in the camera")
        _ptz(cam, _absolute(0.0, 0.0))
        wait_for(lambda: abs(_pan(cam)) < 0.01, 10, "the camera back at 0")
        assert control(f"<PTZCmd>{ptzcmd.build(0x82, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: abs(_pan(cam) - 0.5) < 0.01, 10, "the camera at preset 5")
        assert control(f"<PTZCmd>{ptzcmd.build(0x83, 0, 5)}</PTZCmd>") == "200"
        wait_for(lambda: "gb-5" not in _presets(cam), 10, "preset gb-5 deleted")

        # Refused: a wrong checksum (the camera does not move), an unknown channel.
        before = _pan(cam)
        assert control("<PTZCmd>A50F0101FF0000B6</PTZCmd>") == "400"
        time.sleep(0.5)
        assert abs(_pan(cam) - before) < 0.01
        real_channel, channel = channel, channel[:-6] + "999999"
        assert control("<PTZCmd>A50F0100000000B5</PTZCmd>") == "404"
        channel = real_channel
        # Not supported here: said clearly in a DeviceControl Response with Result ERROR.
        assert control("<TeleBoot>Boot</TeleBoot>") == "200"
        assert control("<GuardCmd>SetGuard</GuardCmd>") == "200"
        answers = wait_for(lambda: _notifies(trace, "DeviceControl"), 10, "the ERROR response")
        assert all("<Result>ERROR</Result>" in a for a in answers)
        assert any(re.search(r"<SN>\d+</SN>", a) for a in answers)
        assert gw.client.get("/api/v1/gb28181/upstream/county").json()["status"]["state"] == (
            "online"
        )

        # The camera's own alarms reach the platform as Alarm MESSAGEs.
        t_alarm = time.monotonic()
        httpx.post(
            f"{sim.control}/cameras/{cam['id']}/alarm",
            json={"kind": "tamper", "on": True},
            timeout=5,
        ).raise_for_status()
        tamper = wait_for(
            lambda: [a for a in _notifies(trace, "Alarm") if "<AlarmType>11<" in a], 20, "tamper"
        )
        print(f"tamper alarm at the platform after {(time.monotonic() - t_alarm) * 1000:.0f} ms")
        sim.motion(cam["id"], True)
        motion = wait_for(
            lambda: [a for a in _notifies(trace, "Alarm") if "<AlarmType>2<" in a], 20, "motion"
        )
        sim.motion(cam["id"], False)
    finally:
        platform.stop()
    for alarm in (tamper[0], motion[0]):
        assert f"<DeviceID>{real_channel}</DeviceID>" in alarm
        assert "<AlarmMethod>5</AlarmMethod>" in alarm
        assert re.search(r"<AlarmTime>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d</AlarmTime>", alarm)
