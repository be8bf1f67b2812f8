"""Live video and camera operations through the tree (city ← town ← village processes)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.cascade_support import all_cameras, start_levels, wait_for

pytestmark = pytest.mark.slow
CAM = "town-a/village-1/cam-01"


def _village_with_camera(gateway_factory, sim_factory, base: str):
    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        base,
        "--size",
        "640x360",
        "--fps",
        "25",
        "--gop",
        "25",
        name="village-sim",
    )
    cam = sim.cameras[0]
    url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"
    lv = start_levels(
        gateway_factory,
        village_extra={
            "cameras": [{"id": "cam-01", "name": "村口", "location": "东村村口", "rtsp_url": url}],
            "streams": {"linger_s": 2},
        },
        town_extra={"streams": {"linger_s": 2}},
        city_extra={"streams": {"linger_s": 2}},
    )
    wait_for(
        lambda: CAM in all_cameras(lv.city.client.get("/api/v1/tree").json()),
        20,
        "the village camera in the city's tree",
    )
    return sim, lv


def town_up_channel(lv) -> int:
    return lv.town.client.get("/api/v1/cascade").json()["uplink"]["streams"][0]["channel"]


def _streams(gw) -> dict[str, dict]:
    return {s["key"]: s for s in gw.client.get("/api/v1/streams").json()["streams"]}


def test_five_viewers_at_the_city_cost_the_village_one_stream(gateway_factory, sim_factory):
    from tests.relay_helpers import WhepClient

    _sim, lv = _village_with_camera(gateway_factory, sim_factory, "127.0.66.1")
    cam = all_cameras(lv.city.client.get("/api/v1/tree").json())[CAM]
    assert cam["name"] == "村口" and cam["location"] == "东村村口"

    async def watch() -> None:
        headers = {"Authorization": f"Bearer {lv.city.token}"} if lv.city.token else {}
        async with httpx.AsyncClient(
            base_url=lv.city.base_url, timeout=30, headers=headers
        ) as http:
            url = f"/api/v1/streams/{CAM}/whep"
            viewers = [WhepClient(http, url, decode_every=5) for _ in range(5)]
            try:
                for v in viewers:
                    r = await v.start()
                    assert r.status_code == 201, r.text
                for v in viewers:
                    assert await v.wait_frames(20, 30), "a city viewer got no video"
                # The camera's own barcode says which camera the pixels come from.
                assert all(v.received.indexes == {1} for v in viewers)

                village = lv.village.client.get("/api/v1/cascade").json()["uplink"]["streams"]
                assert len(village) == 1 and village[0]["camera"] == "cam-01"
                v_hub = _streams(lv.village)["cam-01/main"]
                # One lease for the uplink to the town, whatever the viewers above.
                ups = [c for c in v_hub["consumers"] if c.startswith("cascade")]
                assert len(ups) == 1, v_hub
                t_hub = _streams(lv.town)["village-1/cam-01/main"]
                assert [c for c in t_hub["consumers"] if c.startswith("cascade")] == [
                    f"cascade:{town_up_channel(lv)}"
                ], t_hub
                town_up = lv.town.client.get("/api/v1/cascade").json()["uplink"]["streams"]
                assert len(town_up) == 1 and town_up[0]["camera"] == "village-1/cam-01"
                c_hub = _streams(lv.city)[f"{CAM}/main"]
                assert len([c for c in c_hub["consumers"] if c.startswith("whep")]) == 5, c_hub
                lat = sorted(x for v in viewers for x in v.received.latencies_ms)
                assert lat and lat[len(lat) // 2] < 1000
            finally:
                for v in viewers:
                    await v.stop()

    asyncio.run(watch())
    # The last viewer gone, every hop releases its upstream stream shortly after.
    wait_for(
        lambda: not lv.village.client.get("/api/v1/cascade").json()["uplink"]["streams"],
        20,
        "the village stream released",
    )


def test_snapshot_of_a_village_camera_through_the_tree(gateway_factory, sim_factory):
    _sim, lv = _village_with_camera(gateway_factory, sim_factory, "127.0.67.1")
    r = lv.city.client.get(f"/api/v1/tree/cameras/{CAM}/snapshot.jpg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:2] == b"\xff\xd8" and len(r.content) > 1000
    # Unknown cameras and children are 404s; a malformed path is a 400.
    assert (
        lv.city.client.get("/api/v1/tree/cameras/town-a/village-1/nope/snapshot.jpg").status_code
        == 404
    )
    assert lv.city.client.get("/api/v1/tree/cameras/town-b/x/snapshot.jpg").status_code == 404
    assert lv.city.client.get("/api/v1/tree/cameras/town-a/../x/snapshot.jpg").status_code in (
        400,
        404,
    )
    # The camera itself, as the tree knows it.
    r = lv.city.client.get(f"/api/v1/tree/cameras/{CAM}")
    assert r.status_code == 200 and r.json()["path"] == CAM

    # A village gone offline: the city says so clearly instead of hanging.
    lv.village.stop()
    t0 = time.monotonic()
    wait_for(
        lambda: lv.city.client.get(f"/api/v1/tree/cameras/{CAM}/snapshot.jpg").status_code == 503,
        20,
        "snapshot refused with 503 once the village is gone",
    )
    assert time.monotonic() - t0 < 20


def test_a_village_camera_going_offline_shows_at_the_city_within_5_s(gateway_factory, sim_factory):
    sim, lv = _village_with_camera(gateway_factory, sim_factory, "127.0.70.1")

    def status_at_city() -> str:
        return all_cameras(lv.city.client.get("/api/v1/tree").json())[CAM]["status"]

    # Something keeps the camera's stream open (motion analyses it); make sure it does.
    lease_holder = lv.village.client.get("/api/v1/tree/cameras/cam-01/snapshot.jpg")
    assert lease_holder.status_code == 200
    wait_for(lambda: status_at_city() == "online", 20, "the camera online at the city")
    sim.fault("cam-01", "offline")
    t0 = time.monotonic()
    wait_for(lambda: status_at_city() == "offline", 15, "the camera offline at the city", 0.05)
    took = time.monotonic() - t0
    assert took < 5.0, f"offline reached the city after {took:.1f}s"
    sim.fault("cam-01", "online")
    wait_for(lambda: status_at_city() == "online", 30, "the camera back online at the city")


def test_ptz_of_a_village_camera_from_the_city(gateway_factory, sim_factory):
    sim = sim_factory("--cameras", "1", "--base", "127.0.72.1", "--size", "640x360", name="ptz-sim")
    cam = sim.cameras[0]
    onvif = {
        "host": cam["address"],
        "port": cam["http_port"],
        "username": "admin",
        "password": "admin",
    }
    lv = start_levels(
        gateway_factory,
        village_extra={"cameras": [{"id": "cam-01", "onvif": onvif}], "motion": {"enabled": False}},
    )

    def ptz_known():
        return all_cameras(lv.city.client.get("/api/v1/tree").json()).get(CAM, {}).get("ptz")

    wait_for(ptz_known, 30, "the village camera's PTZ capability at the city")
    r = lv.city.client.post(f"/api/v1/tree/cameras/{CAM}/ptz", json={"action": "move", "pan": 0.5})
    assert r.status_code == 200, r.text
    # Answered by the village's own registry (it names the camera by its local id)
    # after an ONVIF ContinuousMove to the simulated camera.
    assert r.json()["ok"] is True and r.json()["camera"] == "cam-01"

    presets = lv.city.client.get(f"/api/v1/tree/cameras/{CAM}/presets")
    assert presets.status_code == 200, presets.text
    local = lv.village.client.get("/api/v1/cameras/cam-01/presets").json()
    assert presets.json() == local and local, local
    bad = lv.city.client.post(f"/api/v1/tree/cameras/{CAM}/ptz", json={"action": "jump"})
    assert bad.status_code == 400, bad.text
    r = lv.city.client.post(f"/api/v1/tree/cameras/{CAM}/ptz", json={"action": "stop"})
    assert r.status_code == 200, r.text


def test_a_village_motion_event_reaches_the_city_with_its_snapshot(gateway_factory, sim_factory):
    sim, lv = _village_with_camera(gateway_factory, sim_factory, "127.0.74.1")
    time.sleep(2)  # let the detector learn the background
    sim.motion("cam-01", True)

    def motion_at_city():
        r = lv.city.client.get("/api/v1/events", params={"type": "motion"})
        return r.status_code == 200 and [e for e in r.json() if e.get("snapshot_url")]

    try:
        ev = wait_for(motion_at_city, 30, "a village motion event at the city")[0]
    finally:
        sim.motion("cam-01", False)
    assert ev["camera"] == CAM and ev["source"] == "town-a/village-1"
    assert ev["snapshot_url"] == f"/api/v1/events/{ev['id']}/snapshot.jpg"

    def snapshot():
        r = lv.city.client.get(ev["snapshot_url"])
        return r.status_code == 200 and r.content

    jpeg = wait_for(snapshot, 15, "the event's snapshot at the city")
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) > 1000
