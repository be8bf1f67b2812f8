"""Inspection on demand (按需巡检) of any subtree, carried down the cascade as ``inspect``;
a covered camera's diagnosis raised and cleared at the city; a village off at midnight
delivering its missed daily report with exact figures at the village, town and city.

Real gateway processes on loopback: city ← town-a ← village-1, village-2. The city
asks for a subtree; fresh rows come up from the villages of that subtree and from no
other; a village offline when asked runs and delivers when it connects again; bad
nodes and nodes outside an operator's scope get a clear 4xx.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.reports.inspection import aggregate
from gateway.store import reports as report_store
from gateway.store.db import Database
from tests import support
from tests.cascade_support import issue_token_api, start_levels, stored_events, wait_for
from tests.support import GatewayProcess, login, small_sim_args
from tests.test_inspection import TZ, scripted_day

CAMERA = {"id": "cam-01", "rtsp_url": "rtsp://127.0.0.1:9/none"}
QUIET = {"motion": {"enabled": False}}
SCOPED_PW = "scoped-operator-pw-1"
DIAGNOSIS = {"interval_s": 1.0, "raise_after": 2, "clear_after": 2}
ONLINE = 100 * (86400 - 600) / 86400  # the scripted day: out 10:00–10:10
RECORDED = 100 * (86400 - 900) / 86400  # and no recording 14:00–14:05 either


def _run(gw: GatewayProcess, run_id: str) -> dict[str, Any]:
    r = gw.client.get(f"/api/v1/reports/inspection/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _states(run: dict[str, Any]) -> dict[str, str]:
    return {n["node"]: n["state"] for n in run["nodes"]}


def _run_events(gw: GatewayProcess, run_id: str) -> list[dict[str, Any]]:
    return [e for e in stored_events(gw, "inspection") if e["data"].get("run") == run_id]


def _yesterday() -> date:
    # not across local midnight while the test runs: the gateways' "yesterday" must be ours
    while (now := datetime.now(TZ)).hour == 23 and now.minute >= 58:
        time.sleep(5)
    return now.date() - timedelta(days=1)


def _seed(data_dir: Path, node: str, day: date) -> None:
    """The scripted day in a gateway's database, and a report of the day before (so the
    gateway counts as in service then)."""
    data_dir.mkdir(parents=True)
    db = Database(data_dir / "gateway.db")
    try:
        scripted_day(db, day)
        report_store.init(db)
        before = (day - timedelta(days=1)).isoformat()
        report_store.put(db, node, before, {**aggregate(node, []), "day": before}, True)
    finally:
        db.close()


def _final_row(gw: GatewayProcess, node: str | None, day: str) -> dict[str, Any] | None:
    params = {"date": day, **({"node": node} if node else {})}
    r = gw.client.get("/api/v1/reports/inspection", params=params)
    if r.status_code != 200 or not r.json()["final"] or not r.json()["rows"]:
        return None
    return r.json()["rows"][0]


def _samples(gw: GatewayProcess) -> int:
    rows = gw.client.get("/api/v1/diagnosis").json()
    return next((r.get("samples", 0) for r in rows if r["camera"] == "cam-01"), 0)


def _occlusion(gw: GatewayProcess) -> dict[str, Any] | None:
    events = gw.client.get("/api/v1/events", params={"type": "diagnosis"}).json()
    return next(
        (
            e
            for e in events
            if e["camera"] == "town-a/village-1/cam-01" and e["data"].get("kind") == "occlusion"
        ),
        None,
    )


def _online(gw: GatewayProcess, child: str) -> bool:
    children = gw.client.get("/api/v1/cascade").json()["children"]
    return any(c["name"] == child and c["online"] for c in children)


def test_city_inspects_a_subtree_through_the_cascade(
    gateway_factory, sim_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = sim_factory(*small_sim_args("127.0.86.1", fps=10, gop=10), "--no-onvif")
    live = {"id": "cam-01", "rtsp_url": sim.cameras[0]["rtsp_main"]}
    # village-1 diagnoses its camera once a second (10 s by default) on the motion frames
    village_1 = {"cameras": [live], "motion": {"fps": 5}, "diagnosis": DIAGNOSIS}
    lv = start_levels(gateway_factory, village_extra=village_1)
    city, town, v1 = lv.city, lv.town, lv.village
    # village-2 was off at midnight (a power cut): its database holds the scripted day
    yesterday = _yesterday()
    _seed(tmp_path / "village-2-data", "village-2", yesterday)  # gateway_factory's data dir
    v2 = gateway_factory(
        {
            "cameras": [{**CAMERA, "recording": {"mode": "continuous"}}],
            **QUIET,
            "cascade": {
                "level": "village",
                "id": "village-2",
                "name": "西村",
                "heartbeat_s": 1.0,
                "offline_after_s": 3.0,
                "parent": {"url": town.base_url, "token": issue_token_api(town, "village-2")},
            },
        },
        name="village-2",
    )
    wait_for(lambda: _online(city, "town-a"), 60, "the town at the city")
    wait_for(lambda: _online(town, "village-1") and _online(town, "village-2"), 60, "villages")

    # A. it makes the missed daily report as it starts and sends it up: the scripted day
    # (a 10 minute outage, a 5 minute recording gap) gives the exact figures at every level
    iso = yesterday.isoformat()
    for gw, node, camera in (
        (v2, None, "cam-01"),
        (town, "village-2", "village-2/cam-01"),
        (city, "town-a/village-2", "town-a/village-2/cam-01"),
    ):
        row = wait_for(lambda gw=gw, node=node: _final_row(gw, node, iso), 90, f"{camera} {iso}")
        assert row["camera"] == camera
        assert row["online_percent"] == pytest.approx(ONLINE, abs=0.05)
        assert [o["seconds"] for o in row["offline"]] == [600.0]
        rec = row["recording"]
        assert rec["percent"] == pytest.approx(RECORDED, abs=0.05)
        assert [(g["reason"], round(g["seconds"])) for g in rec["gaps"]] == [
            ("camera_offline", 600),
            ("disk_full", 300),
        ]
    tree = city.client.get("/api/v1/reports/inspection", params={"date": iso}).json()["tree"]
    assert tree["cameras"] == 1  # village-1 is brand new: it claims nothing for yesterday
    assert tree["online_rate"] == pytest.approx(ONLINE, abs=0.05)
    assert tree["recording_completeness"] == pytest.approx(RECORDED, abs=0.05)

    # 0. covering the village's camera raises diagnosis occlusion at the city within
    # 15 s, and uncovering clears it (issue 14's end-to-end point, through two hops)
    wait_for(lambda: _samples(v1) >= 4, 90, "village-1's reference picture (four samples)")
    t0 = time.monotonic()
    sim.picture(sim.cameras[0]["id"], "cover")
    raised = wait_for(lambda: _occlusion(city), 30, "occlusion at the city")
    took = time.monotonic() - t0
    print(f"occlusion at the city {took:.1f} s after covering the camera")
    assert took <= 15.0 and raised["end"] is None
    t0 = time.monotonic()
    sim.picture(sim.cameras[0]["id"], "normal")
    wait_for(lambda: (e := _occlusion(city)) and e["end"] is not None, 30, "cleared at the city")
    took = time.monotonic() - t0
    print(f"occlusion cleared at the city {took:.1f} s after uncovering")
    assert took <= 15.0

    # 1. one village: its fresh rows arrive at the city, and nothing from its neighbour
    r = city.client.post("/api/v1/reports/inspection/run", json={"node": "town-a/village-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    run = body["run"]
    assert body["node"] == "town-a/village-1" and run["node"] == "town-a/village-1"
    assert set(_states(run)) == {"town-a/village-1"}
    assert _states(run)["town-a/village-1"] in ("waiting", "arrived")
    done = wait_for(lambda: (s := _run(city, run["id"]))["complete"] and s, 60, "village-1 rows")
    assert _states(done) == {"town-a/village-1": "arrived"} and done["counts"]["arrived"] == 1
    sources = {e["source"] for e in _run_events(city, run["id"])}
    assert sources == {"town-a/village-1"}
    report = city.client.get(
        "/api/v1/reports/inspection", params={"node": "town-a/village-1"}
    ).json()
    assert report["run"] == run["id"] and not report["final"]
    assert [row["camera"] for row in report["rows"]] == ["town-a/village-1/cam-01"]
    # with the day's diagnosis states …
    assert report["rows"][0]["faults"] == ["occlusion"]
    assert report["rows"][0]["diagnosis"][0]["end"] is not None
    # … and a fresh snapshot, fetched from the village through the town
    assert report["rows"][0]["snapshot"] is not None
    snap = city.client.get(
        "/api/v1/reports/inspection/snapshot", params={"camera": "town-a/village-1/cam-01"}
    )
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8", snap.text[:200]
    assert [e["data"]["run"] for e in stored_events(v1, "inspection")] == [run["id"]]
    assert not [e for e in stored_events(v2, "inspection") if "run" in e["data"]]  # not asked

    # 2. the whole town with village-2 offline: it is listed as not yet answered …
    assert v2.client.post("/api/v1/cascade/uplink", json={"enabled": False}).status_code == 200
    wait_for(lambda: not _online(town, "village-2"), 60, "village-2 offline at the town")
    r = city.client.post("/api/v1/reports/inspection/run", json={"node": "town-a"})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    assert _states(run)["town-a/village-2"] == "offline"
    assert set(_states(run)) == {"town-a", "town-a/village-1", "town-a/village-2"}
    part = wait_for(
        lambda: (
            (s := _run(city, run["id"]))["counts"]["arrived"] == 2
            and _states(s)["town-a/village-2"] == "offline"
            and s
        ),
        60,
        "the town and village-1 answered",
    )
    assert not part["complete"]
    assert {e["source"] for e in _run_events(city, run["id"])} == {"town-a", "town-a/village-1"}
    # (the town has no cameras: its answer is an empty report, not stored as one)
    assert (
        city.client.get("/api/v1/reports/inspection", params={"node": "town-a"}).json()["cameras"]
        == 0
    )

    # … the town reboots meanwhile: it keeps the request in its database …
    town_cfg = yaml.safe_load((tmp_path / "town.yaml").read_text(encoding="utf-8"))
    port = town.port
    town.stop()
    # the same data dir and port (the villages' configs name it)
    monkeypatch.setattr(support, "free_port", lambda host="127.0.0.1": port)
    town = gateway_factory(town_cfg, name="town")
    wait_for(lambda: _online(city, "town-a") and _online(town, "village-1"), 60, "town back")
    assert _states(_run(city, run["id"]))["town-a/village-2"] == "offline"

    # … and village-2 delivers when it returns: the town sends it the request then
    assert v2.client.post("/api/v1/cascade/uplink", json={"enabled": True}).status_code == 200
    done = wait_for(lambda: (s := _run(city, run["id"]))["complete"] and s, 60, "village-2 rows")
    assert set(_states(done).values()) == {"arrived"}
    got = city.client.get("/api/v1/reports/inspection", params={"node": "town-a/village-2"})
    assert got.status_code == 200 and got.json()["run"] == run["id"]
    assert [n["id"] for n in city.client.get("/api/v1/reports/inspection/runs").json()][:2] == [
        run["id"],
        body["run"]["id"],
    ]

    audit = city.client.get("/api/v1/audit", params={"action": "inspection_run"}).json()
    assert {e["detail"]["run"] for e in audit["entries"]} >= {run["id"], body["run"]["id"]}

    # 3. bad input gets a clear 4xx
    cases = [
        ({"node": "town-b"}, 404, "unknown node"),
        ({"node": "town-a/village-9"}, 404, "unknown node"),
        ({"node": "town-a/village-1/cam-01"}, 400, "is a camera"),
        ({"node": "town-a", "date": "2999-01-01"}, 400, "future"),
        ({"node": "x" * 700}, 422, ""),
    ]
    for payload, code, words in cases:
        r = city.client.post("/api/v1/reports/inspection/run", json=payload)
        assert r.status_code == code, (payload, r.text)
        assert words in r.text
    assert city.client.get("/api/v1/reports/inspection/runs/nope").status_code == 404
    # village-2's camera is unreachable: its row has no picture, and asking says so
    assert got.json()["rows"][0]["snapshot"] is None
    r = city.client.get(
        "/api/v1/reports/inspection/snapshot", params={"camera": "town-a/village-2/cam-01"}
    )
    assert r.status_code == 404 and "no inspection snapshot" in r.text

    # 4. an operator scoped to village-1 inspects it, and nothing outside it
    r = city.client.post(
        "/api/v1/auth/users",
        json={
            "username": "v1op",
            "password": SCOPED_PW,
            "role": "operator",
            "scope": "town-a/village-1",
        },
    )
    assert r.status_code in (200, 201), r.text
    token = login(city.base_url, "v1op", SCOPED_PW)
    with httpx.Client(
        base_url=city.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as scoped:
        for node in ("town-a", "town-a/village-2", "city"):
            r = scoped.post("/api/v1/reports/inspection/run", json={"node": node})
            assert r.status_code == 403 and "scope" in r.text, (node, r.text)
        r = scoped.post("/api/v1/reports/inspection/run", json={})  # their own subtree
        assert r.status_code == 200 and r.json()["run"]["node"] == "town-a/village-1", r.text
        mine = scoped.get("/api/v1/reports/inspection/runs").json()
        assert {x["node"] for x in mine} == {"town-a/village-1"}
        assert scoped.get(f"/api/v1/reports/inspection/runs/{run['id']}").status_code == 404
