"""The low-bitrate variant of a remote camera is made where the camera is (thin uplinks)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.cascade_support import all_cameras, start_levels, wait_for

pytestmark = pytest.mark.slow
CAM = "town-a/village-1/cam-01"


def _keys(gw) -> set[str]:
    return {s["key"] for s in gw.client.get("/api/v1/streams").json()["streams"]}


def test_low_variant_at_the_city_is_transcoded_at_the_village(gateway_factory, sim_factory):
    from tests.relay_helpers import WhepClient

    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        "127.0.67.1",
        "--size",
        "1280x720",
        "--fps",
        "15",
        "--gop",
        "15",
        name="village-sim",
    )
    cam = sim.cameras[0]
    url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"
    lv = start_levels(
        gateway_factory,
        village_extra={"cameras": [{"id": "cam-01", "rtsp_url": url}]},
    )
    wait_for(
        lambda: CAM in all_cameras(lv.city.client.get("/api/v1/tree").json()),
        20,
        "the village camera in the city's tree",
    )

    async def watch() -> None:
        headers = {"Authorization": f"Bearer {lv.city.token}"}
        async with httpx.AsyncClient(base_url=lv.city.base_url, timeout=30, headers=headers) as h:
            viewer = WhepClient(h, f"/api/v1/streams/{CAM}/whep?variant=low", decode_every=3)
            try:
                r = await viewer.start()
                assert r.status_code == 201, r.text
                assert await viewer.wait_frames(10, 30), "no video at the city"
                assert viewer.received.sizes == {(640, 360)}
                # The village made the variant; the city and the town only relay it.
                assert "cam-01/main@low" in _keys(lv.village)
                assert f"{CAM}/main" not in _keys(lv.city), _keys(lv.city)
                assert "village-1/cam-01/main" not in _keys(lv.town), _keys(lv.town)
                up = lv.village.client.get("/api/v1/cascade").json()["uplink"]["streams"]
                assert len(up) == 1 and up[0].get("variant") in ("low", None), up
            finally:
                await viewer.stop()

    asyncio.run(watch())
