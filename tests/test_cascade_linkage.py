"""Linkage across levels, recordings and clips through the tree (three processes)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.cascade_support import all_cameras, start_levels, stored_events, wait_for

pytestmark = pytest.mark.slow


class SseReader:
    """Reads ``/api/v1/events/stream`` in a thread and keeps every event it saw."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.events: list[dict] = []
        self.connected = threading.Event()
        self._stop = False
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/api/v1/events/stream") as r:
                self.connected.set()
                for line in r.iter_lines():
                    if self._stop:
                        return
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass

    def close(self) -> None:
        self._stop = True
        self._client.close()


def _sim_camera(sim_factory, base: str, name: str) -> dict:
    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        base,
        "--size",
        "640x360",
        "--fps",
        "15",
        "--gop",
        "15",
        name=name,
    )
    cam = sim.cameras[0]
    url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"
    return {"id": "cam-01", "name": f"{name} cam", "rtsp_url": url}


def test_a_village_alarm_brings_up_and_records_a_group_at_the_town(gateway_factory, sim_factory):
    rule = {
        "name": "东村报警联动",
        "match": {"camera": "village-1/*", "type": "alarm"},
        "cameras": ["village-1/cam-01", "cam-01"],
        "wall": True,
        "record_s": 20,
        "cooldown_s": 60,
    }
    rec = {"mode": "off", "segment_s": 2, "pre_s": 0, "post_s": 0}
    lv = start_levels(
        gateway_factory,
        village_extra={
            "cameras": [_sim_camera(sim_factory, "127.0.68.1", "vsim")],
            "recording": rec,
        },
        town_extra={
            "cameras": [_sim_camera(sim_factory, "127.0.69.1", "tsim")],
            "recording": rec,
            "linkage": [rule],
        },
    )
    wait_for(
        lambda: "town-a/village-1/cam-01" in all_cameras(lv.city.client.get("/api/v1/tree").json()),
        20,
        "the village camera at the city",
    )
    sse = SseReader(lv.town.base_url, lv.town.token)
    try:
        assert sse.connected.wait(10)
        time.sleep(0.5)
        t0 = datetime.now(UTC)
        r = lv.village.client.post("/api/v1/events", json={"camera": "cam-01", "type": "alarm"})
        assert r.status_code == 201, r.text
        trigger = r.json()["id"]

        def wall():
            return [e for e in sse.events if e["type"] == "linkage"]

        got = wait_for(wall, 10, "the wall instruction on the town's SSE stream")[0]
        assert got["data"]["wall"] is True
        assert got["data"]["rule"] == "东村报警联动"
        assert got["data"]["cameras"] == ["village-1/cam-01", "cam-01"]
        assert got["data"]["trigger"] == trigger
        assert got["camera"] == "village-1/cam-01"

        # A second alarm inside the cooldown brings up nothing new.
        lv.village.client.post("/api/v1/events", json={"camera": "cam-01", "type": "alarm"})
        time.sleep(2)
        assert len({e["id"] for e in wall()}) == 1
    finally:
        sse.close()

    # Each linked camera records where it is: the village records its own camera.
    def segments(gw, path):
        r = gw.client.get(f"/api/v1/tree/recordings/{path}")
        return r.status_code == 200 and r.json()["recordings"]

    wait_for(lambda: segments(lv.town, "village-1/cam-01"), 30, "village camera recording")
    wait_for(lambda: segments(lv.town, "cam-01"), 30, "town camera recording")
    # And the footage comes back up the tree: a clip of the village camera at the city.
    end = datetime.now(UTC) + timedelta(seconds=1)
    r = lv.city.client.get(
        "/api/v1/tree/recordings/town-a/village-1/cam-01/clip.mp4",
        params={"start": t0.isoformat(), "end": end.isoformat()},
    )
    assert r.status_code == 200, r.text
    assert r.content[4:8] == b"ftyp" and len(r.content) > 10_000

    # The linkage is reported upward like every event, its cameras as the city names them.
    def at_city():
        return stored_events(lv.city, "linkage")

    reported = wait_for(at_city, 10, "the linkage event at the city")[-1]
    assert reported["camera"] == "town-a/village-1/cam-01"
    assert reported["data"]["cameras"] == ["town-a/village-1/cam-01", "town-a/cam-01"]
    # The city has no rule of its own: nothing fired there (no loops either).
    assert len({e["id"] for e in stored_events(lv.city, "linkage")}) == 1


def test_linkage_rules_api_replaces_rules_and_keeps_them(gateway_factory):
    gw = gateway_factory({"cascade": {"id": "town-a", "level": "town"}}, name="solo")
    assert gw.client.get("/api/v1/linkage").json()["rules"] == []
    rules = [
        {
            "name": "r1",
            "match": {"camera": "*", "type": "alarm"},
            "cameras": ["x/cam-01"],
            "record_s": 0,
        }
    ]
    r = gw.client.put("/api/v1/linkage", json=rules)
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["rules"]] == ["r1"]
    bad = gw.client.put("/api/v1/linkage", json=[{"name": "r", "cameras": []}])
    assert bad.status_code == 422
    dup = gw.client.put("/api/v1/linkage", json=rules + rules)
    assert dup.status_code == 400
    ev = gw.client.post("/api/v1/events", json={"camera": "cam-09", "type": "alarm"}).json()
    linked = wait_for(lambda: stored_events(gw, "linkage"), 5, "the rule set by the API firing")
    assert linked[0]["data"]["trigger"] == ev["id"]
    assert (gw.data_dir / "linkage.json").exists()
