"""The events API on a real gateway process: filters, times with offsets, roles, SSE."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx

from tests.support import login


def publish(gw, **fields) -> dict:
    r = gw.client.post("/api/v1/events", json=fields)
    assert r.status_code == 201, r.text
    return r.json()


def test_list_filters_get_and_errors(gateway_factory) -> None:
    gw = gateway_factory()
    a = publish(gw, camera="cam-01", type="motion", zones=["gate"], score=0.2)
    b = publish(gw, camera="cam-02", type="motion")
    c = publish(gw, camera="cam-01", type="tamper")

    ids = lambda r: [e["id"] for e in r.json()]  # noqa: E731
    assert set(ids(gw.client.get("/api/v1/events"))) >= {a["id"], b["id"], c["id"]}
    assert ids(gw.client.get("/api/v1/events", params={"camera": "cam-01", "type": "motion"})) == [
        a["id"]
    ]
    assert len(gw.client.get("/api/v1/events", params={"limit": 1}).json()) == 1

    # Times with an offset (Beijing, +08:00) compare correctly with stored UTC.
    start = datetime.fromisoformat(a["start"])
    cst = start.astimezone(timezone(timedelta(hours=8)))
    later = (cst + timedelta(minutes=5)).isoformat()
    earlier = (cst - timedelta(minutes=5)).isoformat()
    assert ids(gw.client.get("/api/v1/events", params={"since": later})) == []
    assert a["id"] in ids(gw.client.get("/api/v1/events", params={"since": earlier}))
    assert ids(gw.client.get("/api/v1/events", params={"until": earlier})) == []

    got = gw.client.get(f"/api/v1/events/{a['id']}").json()
    assert got["zones"] == ["gate"] and got["score"] == 0.2
    assert gw.client.get("/api/v1/events/nope").status_code == 404
    assert gw.client.get("/api/v1/events/bad%20id").status_code == 422
    assert gw.client.get(f"/api/v1/events/{a['id']}/snapshot.jpg").status_code == 404
    assert gw.client.get("/api/v1/events", params={"limit": 0}).status_code == 422
    assert gw.client.get("/api/v1/events", params={"since": "yesterday"}).status_code == 422


def test_viewer_reads_but_only_operators_acknowledge(gateway_factory) -> None:
    gw = gateway_factory()
    if gw.token is None:  # no auth part in this build: nothing to prove
        return
    ev = publish(gw, camera="cam-01", type="motion")
    r = gw.client.post(
        "/api/v1/auth/users", json={"username": "wang", "password": "viewer-pw-1", "role": "viewer"}
    )
    assert r.status_code == 201, r.text
    viewer = httpx.Client(
        base_url=gw.base_url,
        headers={"Authorization": f"Bearer {login(gw.base_url, 'wang', 'viewer-pw-1')}"},
    )
    with viewer:
        assert viewer.get(f"/api/v1/events/{ev['id']}").status_code == 200
        assert viewer.post(f"/api/v1/events/{ev['id']}/ack").status_code == 403
    assert httpx.get(gw.base_url + "/api/v1/events").status_code == 401
    acked = gw.client.post(f"/api/v1/events/{ev['id']}/ack").json()
    assert acked["acknowledged"] is True and acked["data"]["acknowledged_by"] == "admin"
    assert gw.client.get(f"/api/v1/events/{ev['id']}").json()["acknowledged"] is True


def test_sse_streams_new_events_with_type_and_id(gateway_factory) -> None:
    gw = gateway_factory()
    got: list[tuple[str, str, dict]] = []
    opened = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {gw.token}"} if gw.token else {}
        url = gw.base_url + "/api/v1/events/stream?camera=cam-07"
        try:
            with httpx.stream("GET", url, headers=headers, timeout=10) as r:
                fields: dict[str, str] = {}
                for line in r.iter_lines():
                    opened.set()
                    if not line and "data" in fields:
                        got.append((fields["event"], fields["id"], json.loads(fields["data"])))
                        if len(got) == 2:
                            return  # the client leaves; the server must not mind
                        fields = {}
                    elif line and not line.startswith(":"):
                        key, _, value = line.partition(":")
                        fields[key] = value.strip()
        except httpx.HTTPError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10)
    publish(gw, camera="cam-99", type="motion")  # filtered out
    first = publish(gw, camera="cam-07", type="motion", score=0.5)
    second = publish(gw, camera="cam-07", type="tamper")
    reader.join(10)
    assert [(n, i) for n, i, _ in got] == [("motion", first["id"]), ("tamper", second["id"])]
    assert got[0][2]["score"] == 0.5
    # After the client left, the gateway keeps serving.
    time.sleep(0.3)
    assert gw.client.get("/api/v1/health").status_code == 200


def test_sse_keeps_alive_and_lets_go_of_a_client_that_left(tmp_path, monkeypatch) -> None:
    """In-process, to see the bus: the subscription is closed once the client is gone."""
    import uvicorn

    from gateway.api import events as events_api
    from gateway.api.server import create_app
    from gateway.app import Gateway
    from gateway.config import parse_settings
    from gateway.events.model import Event
    from tests.support import free_port

    monkeypatch.setattr(events_api, "KEEPALIVE_S", 0.3)
    settings = parse_settings({"data_dir": str(tmp_path / "data"), "auth": {"enabled": False}})
    gw = Gateway(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gw, manage_lifecycle=False), host="127.0.0.1", port=port,
                       log_config=None, access_log=False)
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        comments = 0
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/events/stream", timeout=5) as r:
            subscribed = 0
            for line in r.iter_lines():
                comments += line.startswith(": keep-alive")
                if comments == 2:
                    # Counted while reading: leaving the loop drops the line iterator,
                    # which closes the connection at once.
                    subscribed = len(gw.bus._subs)
                    break
            assert subscribed == 1
        # Gone: the next keep-alive write fails (or the disconnect is seen) and the
        # subscription is closed; publishing meanwhile must not pile up anywhere.
        for _ in range(5):
            gw.bus.publish(Event(camera="cam-01", type="motion"))
        deadline = time.monotonic() + 10
        while gw.bus._subs:
            assert time.monotonic() < deadline, "SSE subscription still open"
            time.sleep(0.1)
    finally:
        server.should_exit = True
        thread.join(10)
        gw.db.close()
