"""ONVIF Media2: profiles, codecs and stream URIs where the device offers it, Media1 otherwise.

The simulated camera's ONVIF server on its own 127.0.91.x address, read by our
client; ``gateway probe`` and the camera API against real ``gateway sim`` and
``gateway run`` processes for a camera whose H.265 profiles are only in Media2.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from onvif import ONVIFCamera

from gateway.cameras import onvif
from gateway.cameras.cli import probe_main
from gateway.sim import onvif_server
from tests.support import small_sim_args
from tests.test_sim_onvif import make_camera


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


async def test_h265_profile_only_in_media2_is_found_with_its_codec(served) -> None:
    cam = await served(media2="h265-only")
    # A Media1-only client sees the H.264 main stream alone.
    zeep_cam = ONVIFCamera(cam.address, cam.http_port, "admin", cam.password, adjust_time=True)
    try:
        await zeep_cam.update_xaddrs()
        media1 = await zeep_cam.create_media_service()
        assert [p.token for p in await media1.GetProfiles()] == ["profile_main"]
    finally:
        await zeep_cam.close()

    async with onvif.OnvifClient(cam.address, cam.http_port, "admin", cam.password) as client:
        result = await client.probe()
    got = {p.token: p for p in result.profiles}
    assert sorted(got) == ["profile_main", "profile_sub"]
    sub = got["profile_sub"]
    assert (sub.encoding, sub.width, sub.height, sub.fps, sub.bitrate_kbps, sub.gop) == (
        "H265",
        640,
        360,
        15.0,
        512,
        30,
    )
    assert sub.service == "media2"
    assert sub.stream_uri == f"rtsp://{cam.address}:{cam.rtsp_port}/sub"
    assert got["profile_main"].encoding == "H264"
    assert result.snapshot_uri == f"http://{cam.address}:{cam.http_port}/snapshot.jpg"
    assert result.ptz and all(p.ptz for p in result.profiles)  # PTZ in Media2's profiles too


async def test_without_media2_the_profiles_come_from_media1(served) -> None:
    cam = await served(media2="off")
    async with onvif.OnvifClient(cam.address, cam.http_port, "admin", cam.password) as client:
        assert onvif.TR2 not in client.services()
        result = await client.probe()
    assert [p.service for p in result.profiles] == ["media", "media"]
    # Media1 cannot say H.265: the codec is read from the stream later.
    assert [p.encoding for p in result.profiles] == ["H264", "H264"]


async def test_a_broken_media2_falls_back_to_media1(served) -> None:
    cam = await served(media2="on")
    async with onvif.OnvifClient(cam.address, cam.http_port, "admin", cam.password) as client:
        assert onvif.TR2 in client.services()
        cam.media2 = "off"  # listed by GetServices, but every call now faults
        result = await client.probe()
    assert [p.service for p in result.profiles] == ["media", "media"]
    assert all(p.stream_uri.startswith("rtsp://") for p in result.profiles)


def test_probe_cli_and_camera_api_show_codec_size_fps_bitrate(
    sim_factory, gateway_factory, capsys
) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    args = [*small_sim_args(base), "--codec", "h265", "--media2", "h265-only"]
    sim = sim_factory(*args, "--sub-bitrate", "300", name="sim-media2")
    cam = sim.cameras[0]
    target = f"{cam['address']}:{cam['http_port']}"
    cred = ["--username", cam["username"], "--password", cam["password"]]
    capsys.readouterr()
    assert probe_main([target, *cred, "--json"]) == 0  # `gateway probe`, in this process
    profiles = json.loads(capsys.readouterr().out)["profiles"]
    assert [(p["encoding"], p["width"], p["height"], p["service"]) for p in profiles] == [
        ("H265", 320, 180, "media2"),
        ("H265", 320, 180, "media2"),
    ]
    assert [p["bitrate_kbps"] for p in profiles] == [2000, 300]
    assert all(p["fps"] == 10 for p in profiles)
    assert probe_main([target, *cred]) == 0
    table = capsys.readouterr().out
    assert "KBIT/S" in table and "H265" in table and "Media2" in table
    assert "events: yes  Media2: yes" in table

    onvif_cfg = {"host": cam["address"], "port": cam["http_port"], "username": cam["username"]}
    onvif_cfg["password"] = cam["password"]
    gw = gateway_factory({"cameras": [{"id": "cam-01", "onvif": onvif_cfg}]})
    deadline = time.monotonic() + 30
    while True:
        got = gw.client.get("/api/v1/cameras/cam-01").json()
        if got["profiles"]:
            break
        assert time.monotonic() < deadline, gw.tail()
        time.sleep(0.2)
    assert got["codec"] == "H265"
    assert {(p["encoding"], p["fps"], p["bitrate_kbps"]) for p in got["profiles"]} == {
        ("H265", 10.0, 2000),
        ("H265", 10.0, 300),
    }
    # Switching the camera to its own motion alarms through the API subscribes at once.
    assert "camera_events" not in got
    patched = gw.client.patch("/api/v1/cameras/cam-01", json={"motion": {"source": "camera"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["motion"]["source"] == "camera"
    while (gw.client.get("/api/v1/cameras/cam-01").json().get("camera_events") or {}).get(
        "state"
    ) != "subscribed":
        assert time.monotonic() < deadline + 30, gw.tail()
        time.sleep(0.2)
