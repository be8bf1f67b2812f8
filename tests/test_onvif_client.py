"""The ONVIF client against a fake device with vendor quirks, on real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

from gateway.cameras import onvif
from tests.fake_onvif import FakeOnvif
from tests.support import ROOT


@pytest.fixture
async def device_factory():
    started = []

    async def start(**kwargs) -> FakeOnvif:
        dev = FakeOnvif(**kwargs)
        started.append((dev, await dev.start()))
        return dev

    yield start
    for dev, runner in started:
        dev.released.set()
        await runner.cleanup()


def client(dev: FakeOnvif, password: str | None = None, **kw) -> onvif.OnvifClient:
    return onvif.OnvifClient(
        dev.host, dev.port, dev.username, dev.password if password is None else password, **kw
    )


async def test_probe_reads_device_profiles_and_uris(device_factory) -> None:
    dev = await device_factory()
    async with client(dev, label="cam-01") as c:
        result = await c.probe()
    assert result.device.manufacturer == "Acme" and result.device.model == "IPC-1"
    assert result.device.firmware == "V5.7.3" and result.device.serial == "SN123"
    tokens = [p.token for p in result.profiles]
    assert tokens == ["Profile_2", "Profile_1"], "audio-only profile left out"
    main = result.profiles[1]
    assert (main.width, main.height, main.fps, main.gop, main.encoding) == (
        1920,
        1080,
        25.0,
        50,
        "H264",
    )
    assert main.stream_uri == f"rtsp://127.0.0.1:{dev.port}/Profile_1"
    assert result.snapshot_uri == f"http://127.0.0.1:{dev.port}/snap.jpg"
    assert result.ptz is True
    assert result.services["http://www.onvif.org/ver10/media/wsdl"] == (
        f"http://127.0.0.1:{dev.port}/onvif/media_service"
    )
    assert dev.calls[0] == "GetSystemDateAndTime" and "GetServices" in dev.calls
    assert "GetCapabilities" not in dev.calls


async def test_wrong_password_is_a_clear_auth_error(device_factory) -> None:
    dev = await device_factory()
    with pytest.raises(onvif.AuthError, match="authentication failed for cam-07"):
        async with client(dev, password="wrong", label="cam-07") as c:
            await c.probe()


async def test_http_401_is_an_auth_error_too(device_factory) -> None:
    dev = await device_factory(auth_http_401=True)
    with pytest.raises(onvif.AuthError, match="authentication failed for"):
        async with client(dev, password="wrong") as c:
            await c.device_info()


async def test_http_digest_devices_are_answered_with_digest(device_factory) -> None:
    # Some firmwares want HTTP digest on the SOAP endpoint, even for GetSystemDateAndTime.
    dev = await device_factory(http_digest=True)
    async with client(dev, label="cam-d") as c:
        result = await c.probe()
    assert result.device.manufacturer == "Acme" and len(result.profiles) == 2
    with pytest.raises(onvif.AuthError, match="authentication failed for cam-d"):
        async with client(dev, password="wrong", label="cam-d") as c:
            await c.probe()


async def test_getcapabilities_fallback_and_unroutable_hosts_patched(device_factory) -> None:
    dev = await device_factory(get_services=False, report_host="0.0.0.0")
    async with client(dev) as c:
        result = await c.probe()
    assert "GetCapabilities" in dev.calls
    # XAddrs named 0.0.0.0 were patched to the address we reached the device at.
    assert all(f"//127.0.0.1:{dev.port}/" in x for x in result.services.values())
    assert all(p.stream_uri.startswith(f"rtsp://127.0.0.1:{dev.port}/") for p in result.profiles)
    assert result.snapshot_uri == f"http://127.0.0.1:{dev.port}/snap.jpg"


async def test_clock_offset_is_measured_and_used_for_ws_security(device_factory) -> None:
    # The device is an hour ahead and rejects tokens more than 30 s off its clock.
    dev = await device_factory(clock_skew_s=3600)
    async with client(dev) as c:
        info = await c.device_info()
    assert info.clock_offset_s is not None and abs(info.clock_offset_s - 3600) < 5


async def test_unreachable_and_timeouts_end_cleanly(device_factory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(onvif.UnreachableError, match="cannot reach"):
        async with onvif.OnvifClient("127.0.0.1", closed_port, "a", "b", timeout=2) as c:
            await c.probe()
    dev = await device_factory(hostile="stall")
    started = time.monotonic()
    with pytest.raises(onvif.UnreachableError, match="no answer"):
        async with client(dev, timeout=0.5) as c:
            await c.probe()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", ["billion", "oversize", "truncated"])
async def test_hostile_soap_replies_are_rejected(device_factory, mode: str) -> None:
    dev = await device_factory(hostile=mode)
    with pytest.raises(onvif.OnvifError) as info:
        async with client(dev, label="cam-x") as c:
            await c.probe()
    assert not isinstance(info.value, onvif.AuthError)
    assert "cam-x" in str(info.value)
    assert "rejected reply" in str(info.value)


async def test_ptz_move_stop_presets(device_factory) -> None:
    dev = await device_factory()
    async with client(dev) as c:
        await c.ptz_move("Profile_1", 0.5, -0.25, 0.0)
        await c.ptz_stop("Profile_1")
        presets = await c.ptz_presets("Profile_1")
        await c.ptz_goto("Profile_1", "2")
    ops = [op for op, _ in dev.ptz_log]
    assert ops == ["ContinuousMove", "Stop", "GotoPreset"]
    assert dev.ptz_log[0][1]["ProfileToken"] == "Profile_1"
    assert dev.ptz_log[2][1]["PresetToken"] == "2"
    assert presets == [{"token": "1", "name": "Gate"}, {"token": "2", "name": "路口"}]


async def test_no_ptz_service_is_a_clear_error(device_factory) -> None:
    dev = await device_factory(ptz=False)
    async with client(dev, label="cam-3") as c:
        assert (await c.probe()).ptz is False
        with pytest.raises(onvif.OnvifError, match="cam-3: the camera has no PTZ service"):
            await c.ptz_stop("Profile_1")


async def test_snapshot_fetch_with_basic_auth(device_factory) -> None:
    dev = await device_factory()
    url = f"http://127.0.0.1:{dev.port}/snap.jpg"
    jpeg = await onvif.fetch_snapshot(url, dev.username, dev.password)
    assert jpeg.startswith(b"\xff\xd8")
    with pytest.raises(onvif.AuthError):
        await onvif.fetch_snapshot(url, dev.username, "nope")


def test_url_helpers() -> None:
    assert (
        onvif.with_credentials("rtsp://10.0.0.5:554/s", "ad min", "p@ss:w/d")
        == "rtsp://ad%20min:p%40ss%3Aw%2Fd@10.0.0.5:554/s"
    )
    assert onvif.strip_credentials("rtsp://u%40x:p%3A@h:554/x") == ("rtsp://h:554/x", "u@x", "p:")
    assert onvif.fix_host("rtsp://0.0.0.0:554/a?b=1", "10.1.1.1") == "rtsp://10.1.1.1:554/a?b=1"
    assert onvif.fix_host("rtsp://cam.local/a", "10.1.1.1") == "rtsp://cam.local/a"


async def test_many_clients_in_parallel(device_factory) -> None:
    dev = await device_factory()

    async def one() -> int:
        async with client(dev) as c:
            return len((await c.probe()).profiles)

    assert await asyncio.gather(*(one() for _ in range(5))) == [2] * 5


# -- against the simulator (real processes) ----------------------------------------


def _probe_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "probe", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_probe_cli_against_the_simulator(sim_factory) -> None:
    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        "127.0.218.1",
        "--size",
        "320x180",
        "--sub-size",
        "160x90",
        "--fps",
        "5",
    )
    cam = sim.cameras[0]
    target = f"{cam['address']}:{cam['http_port']}"
    out = _probe_cli(target, "--username", cam["username"], "--password", cam["password"], "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["device"]["manufacturer"] and data["device"]["serial"]
    keys = {"token", "name", "encoding", "width", "height", "fps", "stream_uri"}
    assert all(keys <= set(p) for p in data["profiles"])
    uris = {p["stream_uri"] for p in data["profiles"]}
    assert uris == {cam["rtsp_main"], cam["rtsp_sub"]}
    sizes = sorted(p["width"] * p["height"] for p in data["profiles"])
    assert sizes == [160 * 90, 320 * 180]
    bad = _probe_cli(target, "--username", cam["username"], "--password", "wrong")
    assert bad.returncode == 1
    assert f"authentication failed for {target}" in bad.stderr and "Traceback" not in bad.stderr
    assert "wrong" not in bad.stderr
    gone = _probe_cli("127.0.218.200:8000", "--timeout", "2")
    assert gone.returncode == 1 and "cannot reach" in gone.stderr
    usage = _probe_cli("not a host")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
