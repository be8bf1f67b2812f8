"""Cameras nobody is watching still show their true status in the device tree."""

from __future__ import annotations

import time

from tests.cascade_support import wait_for


def _status(gw, cam_id: str) -> str:
    return gw.client.get(f"/api/v1/cameras/{cam_id}").json()["status"]


def test_an_unwatched_rtsp_camera_reads_online_then_offline_when_it_goes_down(
    gateway_factory, sim_factory
) -> None:
    sim = sim_factory("--cameras", "1", "--base", "127.0.71.1", "--no-onvif", "--no-wsd")
    cam = sim.cameras[0]
    url = f"rtsp://{cam['address']}:{cam['rtsp_port']}/main"
    gw = gateway_factory(
        {"cameras": [{"id": "cam-01", "rtsp_url": url}], "motion": {"enabled": False}}
    )
    wait_for(lambda: _status(gw, "cam-01") == "online", 10, "online without a viewer")
    # Nobody streams it: the status comes from the RTSP port, not from an ingest.
    streams = gw.client.get("/api/v1/streams").json()["streams"]
    assert not [s for s in streams if s["key"].startswith("cam-01/")]
    assert sim.info["cameras"][0]["id"]
    sim.fault(cam["id"], "offline")
    t0 = time.monotonic()
    wait_for(lambda: _status(gw, "cam-01") == "offline", 25, "offline without a viewer")
    assert time.monotonic() - t0 < 25
