"""The camera registry and its API (/api/v1/cameras, /api/v1/discovery).

In-process: the real registry, discovery part and routers on a small gateway
shell, talking to fake ONVIF devices and WS-Discovery stubs on loopback sockets.
The end-to-end tests against ``gateway sim`` and ``gateway run`` are at the end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gateway.api import cameras as cameras_api
from gateway.api import discovery as discovery_api
from gateway.audit import Audit
from gateway.cameras.camera_events import CameraEvents
from gateway.cameras.rediscovery import DiscoveryService
from gateway.cameras.registry import Registry
from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.store.db import Database
from gateway.streams.snapshot import SnapshotUnavailable
from tests import wsd_stub
from tests.fake_onvif import FakeOnvif

PASSWORD = "secret pw/1"


class NoStreams:
    """No stream manager here: a snapshot comes from the camera's own snapshot URI."""

    async def snapshot(self, camera_id: str) -> bytes:
        raise SnapshotUnavailable(f"{camera_id}: no stream manager in this test")


class NoMaps:
    """No e-map here: no camera has a position."""

    def geo_of(self, camera: str) -> tuple[float, float] | None:
        return None


class MiniGateway:
    """Just what the registry and discovery parts and their routers need from
    ``gateway.app.Gateway``."""

    def __init__(self, tmp: Path, config: dict[str, Any] | None = None) -> None:
        # No logins here (the API answers as an anonymous admin); changes are audited.
        self.settings = parse_settings(
            {"data_dir": str(tmp), "auth": {"enabled": False}, **(config or {})}
        )
        self.data_dir = self.settings.data_dir
        self.db = Database(self.data_dir / "gateway.db")
        self.bus = EventBus(self.db)
        self.path = "gw"
        self.audit = Audit(self.db, self.settings.audit)
        self.parts: dict[str, Any] = {}
        self.registry = Registry(self)
        self.discovery = DiscoveryService(self.settings.discovery, self.registry)
        self.camera_events = CameraEvents(self, self.registry)  # not started: no state
        self.streams = NoStreams()
        self.maps = NoMaps()
        self.parts.update(registry=self.registry, discovery=self.discovery)


def make_app(gw: MiniGateway) -> FastAPI:
    app = FastAPI()
    app.state.gateway = gw

    @app.exception_handler(RequestValidationError)
    async def _bad(request, exc: RequestValidationError) -> JSONResponse:  # same shape as server
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "invalid", "errors": errors})

    app.include_router(cameras_api.router)
    app.include_router(discovery_api.router)
    return app


@pytest.fixture
async def env(tmp_path: Path):
    """(gateway, http client, start_device)"""
    runners = []
    gws: list[MiniGateway] = []

    async def device(**kw) -> FakeOnvif:
        dev = FakeOnvif(password=PASSWORD, **kw)
        runners.append((dev, await dev.start()))
        return dev

    def gateway(config: dict[str, Any] | None = None, sub: str = "") -> MiniGateway:
        gw = MiniGateway(tmp_path / (sub or "data"), config)
        gws.append(gw)
        return gw

    gw = gateway()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(gw)), base_url="http://gw"
    )
    yield gw, client, device, gateway
    await client.aclose()
    for g in gws:
        await g.discovery.stop()
        await g.registry.stop()
        g.db.close()
    for dev, runner in runners:
        dev.released.set()
        await runner.cleanup()


def onvif_body(dev: FakeOnvif, name: str = "Gate", password: str = PASSWORD) -> dict[str, Any]:
    return {
        "name": name,
        "location": "村口",
        "onvif": {"host": dev.host, "port": dev.port, "username": "admin", "password": password},
    }


async def test_add_onvif_camera_reads_profiles_and_keeps_password_secret(env, caplog) -> None:
    gw, client, device, _ = env
    dev = await device()
    with caplog.at_level(logging.DEBUG):
        r = await client.post("/api/v1/cameras", json=onvif_body(dev, "Gate 1"))
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["id"] == "gate-1" and cam["status"] == "online" and cam["reason"] == ""
    assert cam["vendor"] == "Acme" and cam["model"] == "IPC-1"
    assert cam["main_profile"] == "Profile_1" and cam["sub_profile"] == "Profile_2"
    assert cam["codec"] == "H264" and cam["ptz"] is True and cam["last_seen"]
    assert PASSWORD not in r.text and "secret" not in r.text
    listing = (await client.get("/api/v1/cameras")).json()
    assert [c["id"] for c in listing] == ["gate-1"] and PASSWORD not in json.dumps(listing)
    # Password: only in the secrets file, mode 0600; never in the database or the logs.
    secrets = gw.data_dir / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text())["cameras"]["gate-1"]["password"] == PASSWORD
    for f in gw.data_dir.glob("gateway.db*"):
        assert PASSWORD.encode() not in f.read_bytes()
    assert PASSWORD not in caplog.text and "secret%20pw" not in caplog.text
    url = gw.registry.stream_url("gate-1", "main")
    assert url == f"rtsp://admin:secret%20pw%2F1@127.0.0.1:{dev.port}/Profile_1"
    assert gw.registry.stream_url("gate-1", "sub").endswith("/Profile_2")


async def test_wrong_password_and_unreachable_still_add_with_status(env) -> None:
    _, client, device, _ = env
    dev = await device()
    r = await client.post("/api/v1/cameras", json=onvif_body(dev, "村口", password="nope"))
    assert r.status_code == 201
    cam = r.json()
    assert cam["id"] == "cam-01", "a name without ASCII gives the next free cam-NN"
    assert cam["status"] == "unauthorised"
    assert cam["reason"] == "authentication failed for cam-01"
    body = {"name": "gone", "onvif": {"host": "127.0.0.1", "port": 1, "username": "a"}}
    r = await client.post("/api/v1/cameras", json=body)
    assert r.status_code == 201 and r.json()["status"] == "offline"
    assert "cannot reach" in r.json()["reason"]


async def test_duplicates_are_refused(env) -> None:
    _, client, device, _ = env
    dev = await device()
    assert (await client.post("/api/v1/cameras", json=onvif_body(dev))).status_code == 201
    r = await client.post("/api/v1/cameras", json=onvif_body(dev, "again"))
    assert r.status_code == 409 and "gate" in r.json()["detail"]
    rtsp = {"name": "r", "rtsp_url": "rtsp://u:p@10.9.9.9:554/s"}
    assert (await client.post("/api/v1/cameras", json=rtsp)).status_code == 201
    rtsp_other_creds = {"name": "r2", "rtsp_url": "rtsp://x:y@10.9.9.9:554/s"}
    assert (await client.post("/api/v1/cameras", json=rtsp_other_creds)).status_code == 409
    assert (await client.post("/api/v1/cameras", json={**rtsp, "id": "gate"})).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "rtsp_url": "http://cam/stream"}, "rtsp_url"),
        ({"name": "x", "onvif": {"host": "cam", "port": 70000}}, "onvif.port"),
        ({"name": "x", "onvif": {"host": "bad host!"}}, "onvif.host"),
        ({"name": "x", "id": "Bad Id", "rtsp_url": "rtsp://h/s"}, "id"),
        ({"name": "x", "rtsp_url": "rtsp://h/s", "motion": {"sensitivity": 3}}, "motion"),
        ({"name": "x", "rtsp_url": "rtsp://h/s", "colour": "red"}, "colour"),
        ({"name": "x"}, "body"),
    ],
)
async def test_invalid_requests_name_the_field(env, body, field) -> None:
    _, client, _, _ = env
    r = await client.post("/api/v1/cameras", json=body)
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["errors"]]
    assert any(loc == f"body.{field}" or loc == field for loc in locs), locs


async def test_rtsp_camera_credentials_are_stored_apart(env) -> None:
    gw, client, _, _ = env
    body = {"name": "Road", "rtsp_url": "rtsp://ad%40min:p%3Ass@10.1.2.3:554/live/main"}
    r = await client.post("/api/v1/cameras", json=body)
    assert r.status_code == 201
    cam = r.json()
    assert cam["rtsp_url"] == "rtsp://10.1.2.3:554/live/main" and "p%3Ass" not in r.text
    assert cam["status"] == "offline" and cam["onvif"] is None
    assert gw.registry.stream_url("road") == "rtsp://ad%40min:p%3Ass@10.1.2.3:554/live/main"
    # No sub stream: the main one serves.
    assert gw.registry.stream_url("road", "sub") == gw.registry.stream_url("road")
    r = await client.patch("/api/v1/cameras/road", json={"sub_rtsp_url": "rtsp://10.1.2.3/sub"})
    assert r.status_code == 200
    assert gw.registry.stream_url("road", "sub") == "rtsp://ad%40min:p%3Ass@10.1.2.3/sub"


async def test_patch_motion_recording_tags_and_profiles(env) -> None:
    gw, client, device, _ = env
    dev = await device()
    await client.post("/api/v1/cameras", json=onvif_body(dev))
    patch = {
        "location": "桥头",
        "division": "城关镇",
        "level": "village",
        "motion": {"sensitivity": 0.9, "zones": {"door": [[0, 0], [0.5, 0], [0.5, 0.5]]}},
        "recording": {"mode": "continuous"},
        "sub_profile": "Profile_1",
    }
    r = await client.patch("/api/v1/cameras/gate", json=patch)
    assert r.status_code == 200, r.text
    cam = gw.registry.get("gate")
    assert cam.motion.sensitivity == 0.9 and "door" in cam.motion.zones
    assert cam.recording.mode == "continuous" and cam.sub_profile == "Profile_1"
    assert r.json()["location"] == "桥头" and r.json()["motion_custom"] is True
    r = await client.patch("/api/v1/cameras/gate", json={"motion": None})
    assert gw.registry.get("gate").motion == gw.settings.motion
    bad = await client.patch("/api/v1/cameras/gate", json={"main_profile": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "body.main_profile"
    bad = await client.patch("/api/v1/cameras/gate", json={"recording": {"mode": "sometimes"}})
    assert bad.status_code == 422
    assert gw.registry.get("gate").location == "桥头", "a refused patch changes nothing"
    # A new password probes again.
    r = await client.patch("/api/v1/cameras/gate", json={"onvif": {"password": "wrong"}})
    assert r.json()["status"] == "unauthorised"
    r = await client.patch("/api/v1/cameras/gate", json={"onvif": {"password": PASSWORD}})
    assert r.json()["status"] == "online"


async def test_delete_removes_camera_and_its_secrets(env) -> None:
    gw, client, _, _ = env
    await client.post("/api/v1/cameras", json={"id": "a", "rtsp_url": "rtsp://u:p@h/s"})
    assert gw.registry.secrets.get("a")
    assert (await client.delete("/api/v1/cameras/a")).status_code == 204
    assert (await client.get("/api/v1/cameras/a")).status_code == 404
    assert gw.registry.secrets.get("a") == {}
    assert (await client.delete("/api/v1/cameras/a")).status_code == 404


async def test_ptz_presets_and_snapshot(env) -> None:
    _, client, device, _ = env
    dev = await device()
    await client.post("/api/v1/cameras", json=onvif_body(dev))
    r = await client.post("/api/v1/cameras/gate/ptz", json={"action": "move", "pan": 0.5})
    assert r.status_code == 200 and r.json()["ok"] is True
    await client.post("/api/v1/cameras/gate/ptz", json={"action": "stop"})
    r = await client.post("/api/v1/cameras/gate/ptz", json={"action": "goto_preset", "preset": "2"})
    assert r.status_code == 200
    assert [op for op, _ in dev.ptz_log] == ["ContinuousMove", "Stop", "GotoPreset"]
    assert dev.ptz_log[0][1]["ProfileToken"] == "Profile_1"
    presets = (await client.get("/api/v1/cameras/gate/presets")).json()
    assert presets[1] == {"token": "2", "name": "路口"}
    bad = await client.post("/api/v1/cameras/gate/ptz", json={"action": "move", "pan": 2})
    assert bad.status_code == 422
    bad = await client.post("/api/v1/cameras/gate/ptz", json={"action": "goto_preset"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "body.preset"
    snap = await client.get("/api/v1/cameras/gate/snapshot.jpg")
    assert snap.status_code == 200 and snap.content.startswith(b"\xff\xd8")
    assert snap.headers["content-type"] == "image/jpeg"


async def test_unreachable_onvif_camera_is_probed_again_until_it_answers(env) -> None:
    import socket

    gw, client, device, _ = env
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    body = {
        "id": "late",
        "onvif": {"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD},
    }
    r = await client.post("/api/v1/cameras", json=body)
    assert r.json()["status"] == "offline"
    gw.registry.recovery.interval_s = 0.2
    await gw.registry.start()
    await device(port=port)
    for _ in range(100):
        if gw.registry.get("late").status == "online":
            break
        await asyncio.sleep(0.05)
    cam = gw.registry.get("late")
    assert cam.status == "online" and cam.main_profile == "Profile_1"


async def test_status_changes_publish_events_and_call_listeners(env) -> None:
    gw, client, _, _ = env
    await client.post("/api/v1/cameras", json={"id": "a", "rtsp_url": "rtsp://h/s"})
    events, changes = [], []
    gw.bus.add_listener(events.append)
    gw.registry.on_change(lambda cam: changes.append((cam.id, cam.status)))
    gw.registry.set_status("a", "online")
    gw.registry.set_status("a", "online")  # no change, no event
    gw.registry.set_status("a", "offline", "RTSP timeout")
    await gw.registry.flush()  # events are stored and published off the event loop
    assert [(e.type, e.camera) for e in events] == [("camera_online", "a"), ("camera_offline", "a")]
    assert events[1].data["reason"] == "RTSP timeout" and events[1].source == "gw"
    assert changes[-1] == ("a", "offline")
    with pytest.raises(ValueError):
        gw.registry.set_status("a", "sleepy")


async def test_config_cameras_load_and_win_and_records_persist(env) -> None:
    _, _, device, gateway = env
    dev = await device()
    config = {
        "cameras": [
            {
                "id": "static-1",
                "name": "Static",
                "onvif": {
                    "host": dev.host,
                    "port": dev.port,
                    "username": "admin",
                    "password": PASSWORD,
                },
                "motion": {"sensitivity": 0.2},
            },
            {"id": "static-2", "rtsp_url": "rtsp://u:pw@10.0.0.9/s", "location": "路口"},
        ]
    }
    gw = gateway(config, sub="cfg")
    await gw.registry.start()
    for _ in range(100):
        if gw.registry.get("static-1").status == "online":
            break
        await asyncio.sleep(0.05)
    cam = gw.registry.get("static-1")
    assert cam.status == "online" and cam.source == "config" and cam.motion.sensitivity == 0.2
    assert gw.registry.stream_url("static-2") == "rtsp://u:pw@10.0.0.9/s"
    with pytest.raises(ValueError, match="config file"):
        await gw.registry.remove("static-2")
    # A second start on the same data keeps what was learnt; the config still wins.
    await gw.registry.stop()
    again = Registry(gw)
    assert again.get("static-1").main_profile == "Profile_1"
    assert again.get("static-2").location == "路口"


async def test_discovery_api_scan_results_add_and_seen_marks(env) -> None:
    _, _, device, gateway = env
    dev = await device()
    port = wsd_stub.pick_port()
    gw = gateway({"discovery": {"port": port, "timeout_s": 0.5, "interfaces": []}}, sub="disc")
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(gw)), base_url="http://x")
    xaddr = f"http://0.0.0.0:{dev.port}/onvif/device_service"  # patched to the sender

    def reply(mid: str, _t: str) -> list[bytes]:
        return [wsd_stub.probe_match("urn:uuid:dev-1", xaddr, mid, "Door%20cam")]

    transport = (await wsd_stub.start_stub("127.0.0.1", port, reply))[1]
    try:
        r = await client.post("/api/v1/discovery", json={"ranges": ["127.0.0.1/32"]})
        assert r.status_code == 202
        again = await client.post("/api/v1/discovery", json={"ranges": ["127.0.0.1"]})
        assert again.status_code == 409
        for _ in range(100):
            status = (await client.get("/api/v1/discovery")).json()
            if status["state"] == "done":
                break
            await asyncio.sleep(0.05)
        assert status["state"] == "done"
        [found] = status["results"]
        assert found["endpoint"] == "urn:uuid:dev-1" and found["name"] == "Door cam"
        assert found["camera"] is None
        assert (found["host"], found["port"]) == ("127.0.0.1", dev.port)
        body = {"endpoint": "urn:uuid:dev-1", "username": "admin", "password": PASSWORD}
        r = await client.post("/api/v1/discovery/add", json=body)
        assert r.status_code == 201, r.text
        cam = r.json()
        assert cam["status"] == "online" and cam["name"] == "Door cam" and cam["id"] == "cam-01"
        assert cam["endpoint"] == "urn:uuid:dev-1"
        assert (await client.post("/api/v1/discovery/add", json=body)).status_code == 409
        # Re-discovery marks it seen; once the device goes quiet, unseen.
        await gw.discovery._scan([], [])
        assert gw.registry.get("cam-01").discovery_seen is True
        transport.close()
        await gw.discovery._scan([], [])
        assert gw.registry.get("cam-01").discovery_seen is False
    finally:
        transport.close()
        await client.aclose()
    bad = await client_post(gw, {"ranges": ["10.0.0.0/33"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "body.ranges"
    bad = await client_post(gw, {"interfaces": ["eth0"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "body.interfaces"


async def client_post(gw: MiniGateway, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(gw)), base_url="http://x"
    ) as client:
        return await client.post("/api/v1/discovery", json=body)


# -- end to end: gateway run + gateway sim ------------------------------------------

SMALL_SIM = ("--size", "320x180", "--sub-size", "160x90", "--fps", "5")


def wait_for(fn, timeout: float = 30.0, step: float = 0.2):
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def test_gateway_adds_discovers_and_serves_sim_cameras(sim_factory, gateway_factory) -> None:
    sim = sim_factory(
        "--cameras", "3", "--base", "127.0.219.1", "--password", "s3cret-Sim", *SMALL_SIM
    )
    gw = gateway_factory({"discovery": {"interval_s": 0, "timeout_s": 1}})
    c = gw.client
    first, second, third = sim.cameras
    body = {
        "name": "Sim one",
        "onvif": {
            "host": first["address"],
            "port": first["http_port"],
            "username": first["username"],
            "password": first["password"],
        },
    }
    r = c.post("/api/v1/cameras", json=body)
    assert r.status_code == 201, r.text
    cam = r.json()
    assert cam["status"] == "online" and cam["vendor"] and len(cam["profiles"]) == 2
    assert first["password"] not in json.dumps(cam["onvif"])
    bad = {
        **body,
        "name": "Sim two",
        "onvif": {**body["onvif"], "host": second["address"], "password": "wrong"},
    }
    r = c.post("/api/v1/cameras", json=bad)
    assert r.status_code == 201 and r.json()["status"] == "unauthorised"
    assert r.json()["reason"] == f"authentication failed for {r.json()['id']}"
    assert c.post("/api/v1/cameras", json=body).status_code == 409
    snap = c.get(f"/api/v1/cameras/{cam['id']}/snapshot.jpg")
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
    # Discovery: scan the sim's range, see which are known, add the third.
    assert c.post("/api/v1/discovery", json={"ranges": ["127.0.219.0/29"]}).status_code == 202
    status = wait_for(lambda: (s := c.get("/api/v1/discovery").json())["state"] == "done" and s)
    assert status, "scan did not finish"
    known = {d["address"]: d["camera"] for d in status["results"]}
    assert known[first["address"]] == cam["id"] and known[third["address"]] is None
    r = c.post(
        "/api/v1/discovery/add",
        json={"address": third["address"], "username": "admin", "password": "s3cret-Sim"},
    )
    assert r.status_code == 201 and r.json()["status"] == "online", r.text
    assert r.json()["endpoint"] == third["endpoint"]
    ids = sorted(x["id"] for x in c.get("/api/v1/cameras").json())
    assert len(ids) == 3
    # Roles: a viewer reads, an operator steers PTZ, only an admin changes the inventory.
    from tests.support import login

    tokens = {}
    for role in ("viewer", "operator"):
        user = {"username": f"u-{role}", "password": "pw-long-enough", "role": role}
        assert c.post("/api/v1/auth/users", json=user).status_code == 201
        tokens[role] = {
            "Authorization": f"Bearer {login(gw.base_url, user['username'], user['password'])}"
        }
    viewer, operator = tokens["viewer"], tokens["operator"]
    assert c.get("/api/v1/cameras", headers=viewer).status_code == 200
    assert c.post("/api/v1/cameras", json=body, headers=viewer).status_code == 403
    assert c.post("/api/v1/cameras", json=body, headers=operator).status_code == 403
    move = {"action": "move", "pan": 0.3}
    assert c.post(f"/api/v1/cameras/{cam['id']}/ptz", json=move, headers=viewer).status_code == 403
    r = c.post(f"/api/v1/cameras/{cam['id']}/ptz", json=move, headers=operator)
    assert r.status_code == 200, r.text
    r = c.post(f"/api/v1/cameras/{cam['id']}/ptz", json={"action": "stop"}, headers=operator)
    assert r.status_code == 200
    assert c.get(f"/api/v1/cameras/{cam['id']}/presets", headers=viewer).status_code == 200
    assert c.delete(f"/api/v1/cameras/{cam['id']}", headers=operator).status_code == 403
    for f in gw.data_dir.glob("gateway.db*"):
        assert b"s3cret-Sim" not in f.read_bytes()
    assert "s3cret-Sim" not in gw.tail(1_000_000)
    assert "s3cret-Sim" not in c.get("/api/v1/cameras").text


def test_auto_add_from_periodic_discovery(sim_factory, gateway_factory) -> None:
    sim = sim_factory("--cameras", "2", "--base", "127.0.220.1", *SMALL_SIM)
    gw = gateway_factory(
        {
            "discovery": {
                "ranges": ["127.0.220.0/30"],
                "interval_s": 30,
                "timeout_s": 1,
                "auto_add": True,
                "username": "admin",
                "password": "admin",
            }
        }
    )

    def online() -> list[dict]:
        cams = gw.client.get("/api/v1/cameras").json()
        ready = len(cams) == 2 and all(x["status"] == "online" for x in cams)
        return cams if ready else []

    cams = wait_for(online, timeout=60)
    assert len(cams) == 2, gw.client.get("/api/v1/cameras").text
    by_id = {x["id"]: x for x in cams}
    assert set(by_id) == {"cam-01", "cam-02"}
    assert by_id["cam-01"]["endpoint"] == sim.cameras[0]["endpoint"]
    assert by_id["cam-01"]["source"] == "discovery"
    assert wait_for(lambda: gw.client.get("/api/v1/cameras/cam-01").json()["discovery_seen"])


class LoopThread:
    """An asyncio loop in a thread, for stub devices next to a gateway process."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_hostile_replies_are_rejected_and_the_gateway_stays_up(gateway_factory) -> None:
    from tests.test_wsd_parse import BILLION_LAUGHS, HIK_STYLE, XXE

    port = wsd_stub.pick_port()
    loop = LoopThread()
    transports = []
    try:
        payloads = {
            "127.0.222.1": [BILLION_LAUGHS.encode()],
            "127.0.222.2": [XXE.encode()],
            "127.0.222.3": [HIK_STYLE.encode()[:200], b"\x00" * 5000],
        }
        for addr, datagrams in payloads.items():
            transports.append(
                loop.run(wsd_stub.start_stub(addr, port, lambda _m, _t, d=datagrams: d))[1]
            )
        good = wsd_stub.good_reply("127.0.222.4", "urn:uuid:good")
        transports.append(loop.run(wsd_stub.start_stub("127.0.222.4", port, good))[1])
        evil = FakeOnvif(host="127.0.222.5", password=PASSWORD, hostile="billion")
        runner = loop.run(evil.start())

        gw = gateway_factory({"discovery": {"port": port, "timeout_s": 1, "interval_s": 0}})
        c = gw.client
        assert c.post("/api/v1/discovery", json={"ranges": ["127.0.222.0/29"]}).status_code == 202
        status = wait_for(lambda: (s := c.get("/api/v1/discovery").json())["state"] == "done" and s)
        assert status and [d["endpoint"] for d in status["results"]] == ["urn:uuid:good"]
        assert status["rejected"] >= 6
        body = onvif_body(evil, "evil")
        r = c.post("/api/v1/cameras", json=body)
        assert r.status_code == 201 and r.json()["status"] == "error"
        assert "rejected reply" in r.json()["reason"]
        assert c.get("/api/v1/health").status_code == 200
        assert gw.popen.poll() is None
        log = gw.tail(1_000_000)
        assert "rejected a reply from 127.0.222.1: forbidden XML construct" in log
        assert "malformed XML" in log
        assert "Traceback" not in log
        evil.released.set()
        loop.run(runner.cleanup())
    finally:
        for t in transports:
            loop.loop.call_soon_threadsafe(t.close)
        loop.stop()
