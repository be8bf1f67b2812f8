"""Three gateways as processes (city ← town ← village): tree, events, trust, liveness."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import support
from tests.cascade_support import (
    child_stats,
    find_node,
    issue_token_api,
    metric,
    start_levels,
    stored_events,
    wait_for,
)

pytestmark = pytest.mark.slow


def test_city_tree_shows_every_level_and_a_stalled_child_goes_offline(gateway_factory):
    lv = start_levels(gateway_factory)

    def town_and_village_online():
        tree = lv.city.client.get("/api/v1/tree").json()
        village = find_node(tree, "town-a/village-1")
        return village is not None and village["status"] == "online" and tree

    tree = wait_for(town_and_village_online, 20, "the village in the city's tree")
    town = find_node(tree, "town-a")
    assert town["level"] == "town" and town["name"] == "城关镇"
    assert find_node(tree, "town-a/village-1")["name"] == "东村"

    # A frozen village (no heartbeats, socket still open) is marked offline by the
    # town after offline_after_s, and the city hears of it.
    os.kill(lv.village.popen.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        wait_for(
            lambda: (
                find_node(lv.city.client.get("/api/v1/tree").json(), "town-a/village-1")["status"]
                == "offline"
            ),
            15,
            "the frozen village offline at the city",
        )
        assert time.monotonic() - t0 < 10
    finally:
        os.kill(lv.village.popen.pid, signal.SIGCONT)
    wait_for(town_and_village_online, 30, "the village back online after it thawed")


def test_events_queued_during_an_uplink_cut_arrive_in_order_exactly_once(gateway_factory):
    lv = start_levels(gateway_factory)
    wait_for(lambda: child_stats(lv.city, "town-a").get("online"), 20, "town at the city")
    wait_for(lambda: child_stats(lv.town, "village-1").get("online"), 20, "village at town")
    published_before = metric(lv.city, "gateway_events_published_total")

    r = lv.town.client.post("/api/v1/cascade/uplink", json={"enabled": False})
    assert r.status_code == 200, r.text
    wait_for(lambda: not child_stats(lv.city, "town-a").get("online"), 15, "town cut off")

    for i in range(200):
        r = lv.village.client.post(
            "/api/v1/events", json={"camera": "cam-01", "type": "test_burst", "data": {"n": i}}
        )
        assert r.status_code == 201, r.text
    # They reach the town meanwhile, and wait in its outbox.
    wait_for(lambda: len(stored_events(lv.town, "test_burst")) == 200, 30, "200 at the town")
    time.sleep(1.0)
    assert stored_events(lv.city, "test_burst") == []
    assert lv.town.client.get("/api/v1/cascade").json()["uplink"]["outbox_pending"] >= 200

    r = lv.town.client.post("/api/v1/cascade/uplink", json={"enabled": True})
    assert r.status_code == 200
    wait_for(lambda: len(stored_events(lv.city, "test_burst")) >= 200, 30, "200 at the city")
    time.sleep(1.5)  # anything sent twice would show up now

    events = stored_events(lv.city, "test_burst")
    assert [e["data"]["n"] for e in events] == list(range(200))
    assert {e["camera"] for e in events} == {"town-a/village-1/cam-01"}
    assert {e["source"] for e in events} == {"town-a/village-1"}
    # Exactly once: the city's bus published each of them once, nothing else.
    assert metric(lv.city, "gateway_events_published_total") - published_before == 200
    assert child_stats(lv.city, "town-a")["events_in"] == 200
    assert lv.town.client.get("/api/v1/cascade").json()["uplink"]["outbox_pending"] == 0


async def _child_session(url: str, token: str, hello_id: str):
    ws = await connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
    )
    await ws.send(json.dumps({"type": "hello", "v": 1, "id": "h", "gateway": hello_id}))
    return ws


def test_a_child_token_cannot_publish_another_childs_path(gateway_factory):
    town = gateway_factory({"cascade": {"level": "town", "id": "town-a"}}, name="town")
    token = issue_token_api(town, "village-1")
    issue_token_api(town, "village-2")
    ws_url = town.base_url.replace("http://", "ws://") + "/api/v1/cascade/ws"

    async def scenario() -> None:
        # A bad token never gets a WebSocket.
        with pytest.raises(InvalidStatus):
            await connect(ws_url, additional_headers={"Authorization": "Bearer gwc_nope"})
        # village-1's token claiming to be village-2 is refused at hello.
        ws = await _child_session(ws_url, token, "village-2")
        with pytest.raises(ConnectionClosed):
            for _ in range(3):
                await asyncio.wait_for(ws.recv(), 5)
        # As itself, it gets in, but every message about village-2 is dropped.
        ws = await _child_session(ws_url, token, "village-1")
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["type"] == "welcome"
        cam2 = {"id": "cam-01", "path": "village-2/cam-01", "status": "online"}
        bad = [
            {
                "type": "catalog",
                "tree": {"id": "village-2", "path": "village-2", "cameras": [cam2]},
            },
            {
                "type": "catalog",
                "tree": {"id": "village-1", "path": "village-1", "cameras": [cam2]},
            },
            {"type": "camera", "camera": cam2},
            {
                "type": "events",
                "items": [{"seq": 1, "event": {"camera": "village-2/cam-01", "type": "motion"}}],
            },
            {"type": "shutdown_everything"},
        ]
        for msg in bad:
            await ws.send(json.dumps(msg))
        cam1 = {"id": "cam-01", "path": "village-1/cam-01", "status": "online"}
        await ws.send(
            json.dumps(
                {
                    "type": "catalog",
                    "tree": {"id": "village-1", "path": "village-1", "cameras": [cam1]},
                }
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "events",
                    "items": [
                        {
                            "seq": 1,
                            "event": {"id": "ok-1", "camera": "village-1/cam-01", "type": "motion"},
                        }
                    ],
                }
            )
        )
        ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ack == {"v": 1, "id": "", "type": "ack", "seq": 1}
        await ws.close()

    asyncio.run(scenario())
    tree = town.client.get("/api/v1/tree").json()
    paths = {c["path"] for ch in tree["children"] for c in ch["cameras"]}
    assert paths == {"village-1/cam-01"}
    assert find_node(tree, "village-2")["cameras"] == []
    assert child_stats(town, "village-1")["rejected"] == 5
    cameras = {e["camera"] for e in stored_events(town, "motion")}
    assert cameras == {"village-1/cam-01"}
    assert "outside the child's subtree" in town.tail(20000)


def test_revoking_a_child_closes_its_live_connection(gateway_factory):
    lv = start_levels(gateway_factory)
    wait_for(lambda: child_stats(lv.town, "village-1").get("online"), 20, "village online")
    r = lv.town.client.delete("/api/v1/children/village-1")
    assert r.status_code == 200
    wait_for(lambda: not child_stats(lv.town, "village-1").get("online"), 5, "village dropped")
    time.sleep(3)  # its reconnects are refused
    assert not child_stats(lv.town, "village-1").get("online")
    listed = {c["name"]: c for c in lv.town.client.get("/api/v1/children").json()}
    assert listed["village-1"]["revoked"] is not None


def test_a_parent_restart_loses_no_event_and_repeats_none(gateway_factory, monkeypatch):
    lv = start_levels(gateway_factory)
    wait_for(lambda: child_stats(lv.city, "town-a").get("online"), 20, "town at the city")
    wait_for(lambda: child_stats(lv.town, "village-1").get("online"), 20, "village at town")

    def burst(start: int, n: int) -> None:
        for i in range(start, start + n):
            r = lv.village.client.post(
                "/api/v1/events",
                json={"camera": "cam-01", "type": "test_restart", "data": {"n": i}},
            )
            assert r.status_code == 201, r.text

    burst(0, 40)
    wait_for(lambda: len(stored_events(lv.city, "test_restart")) == 40, 20, "first 40 at city")
    port = lv.city.port
    lv.city.stop()
    burst(40, 40)  # while the city is down
    # The same city again: same data dir, same port (the town's config names it).
    monkeypatch.setattr(support, "free_port", lambda host="127.0.0.1": port)
    city = gateway_factory(
        {"cascade": {"level": "city", "id": "city", "heartbeat_s": 1.0, "offline_after_s": 3.0}},
        name="city",
    )
    burst(80, 40)  # while the town reconnects
    wait_for(lambda: len(stored_events(city, "test_restart")) >= 120, 30, "all 120 at the city")
    time.sleep(1.5)
    events = stored_events(city, "test_restart")
    assert [e["data"]["n"] for e in events] == list(range(120))
    # The restarted city published only what it had not had before the restart.
    assert metric(city, "gateway_events_published_total") == 80


def test_a_child_is_back_within_seconds_of_a_long_parent_outage(gateway_factory, monkeypatch):
    lv = start_levels(gateway_factory)
    wait_for(lambda: child_stats(lv.city, "town-a").get("online"), 20, "town at the city")
    port = lv.city.port
    lv.city.stop()
    time.sleep(16)  # the town's redial backoff has grown to its cap by now
    monkeypatch.setattr(support, "free_port", lambda host="127.0.0.1": port)
    city = gateway_factory(
        {"cascade": {"level": "city", "id": "city", "heartbeat_s": 1.0, "offline_after_s": 3.0}},
        name="city",
    )
    t0 = time.monotonic()
    wait_for(lambda: child_stats(city, "town-a").get("online"), 20, "town back at the city")
    assert time.monotonic() - t0 < 4.0
