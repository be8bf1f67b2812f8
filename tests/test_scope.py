"""Access scoped to a subtree, and no path traversal through the file endpoints.

A town gateway with a camera of its own and two village children (each with a
camera) is real processes on loopback. A user scoped to ``village-1`` must see
that village's cameras and events and nothing else, whichever endpoint they ask
(cameras, tree, events list/get/SSE, live video, snapshots, recordings, streams,
metrics). Path traversal attempts on recording, snapshot, segment and static
file URLs get a 4xx and never a byte of a file outside the data directory.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from tests.cascade_support import all_cameras, issue_token_api, wait_for
from tests.support import login
from tests.test_fuzz_whep import offer

NOWHERE = "rtsp://127.0.163.250:1"  # closed: cameras show offline, which is enough here
SCOPED_PW = "scoped-user-pw-1"


def _child(start: Any, town: Any, vid: str, cam: str) -> Any:
    return start(
        {
            "cameras": [{"id": cam, "rtsp_url": f"{NOWHERE}/{vid}"}],
            "discovery": {"interval_s": 0},
            "cascade": {
                "level": "village",
                "id": vid,
                "heartbeat_s": 1.0,
                "offline_after_s": 3.0,
                "parent": {"url": town.base_url, "token": issue_token_api(town, vid)},
            },
        },
        name=vid,
    )


@pytest.fixture
def town(gateway_factory) -> Any:
    town = gateway_factory(
        {
            "cameras": [{"id": "cam-t1", "rtsp_url": f"{NOWHERE}/town"}],
            "discovery": {"interval_s": 0},
            "relay": {"interfaces": ["127.0.0.1"], "source_wait_s": 1},
            "cascade": {
                "level": "town",
                "id": "town-a",
                "heartbeat_s": 1.0,
                "offline_after_s": 3.0,
            },
        },
        name="town",
    )
    _child(gateway_factory, town, "village-1", "cam-01")
    _child(gateway_factory, town, "village-2", "cam-02")
    wait_for(
        lambda: (
            {"village-1/cam-01", "village-2/cam-02"}
            <= set(all_cameras(town.client.get("/api/v1/tree").json()))
        ),
        30,
        "both villages' cameras in the town's tree",
    )
    r = town.client.post(
        "/api/v1/auth/users",
        json={"username": "v1op", "password": SCOPED_PW, "role": "operator", "scope": "village-1"},
    )
    assert r.status_code in (200, 201), r.text
    return town


def _scoped(town: Any) -> httpx.Client:
    token = login(town.base_url, "v1op", SCOPED_PW)
    return httpx.Client(
        base_url=town.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _publish(town: Any, camera: str, marker: str) -> str:
    r = town.client.post(
        "/api/v1/events", json={"camera": camera, "type": "custom", "data": {"m": marker}}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_scoped_user_sees_only_their_subtree(town: Any) -> None:
    user = _scoped(town)
    assert user.get("/api/v1/auth/me").json()["scope"] == "village-1"

    # Device tree: village-1's camera only.
    tree = user.get("/api/v1/tree").json()
    cams = set(all_cameras(tree))
    assert cams == {"village-1/cam-01"}, cams
    assert "village-2" not in json.dumps(tree)
    assert user.get("/api/v1/tree/cameras/village-1/cam-01").status_code == 200
    for path in ("village-2/cam-02", "cam-t1"):
        assert user.get(f"/api/v1/tree/cameras/{path}").status_code == 404
        assert user.get(f"/api/v1/tree/cameras/{path}/snapshot.jpg").status_code == 404
        assert (
            user.post(f"/api/v1/tree/cameras/{path}/ptz", json={"action": "stop"}).status_code
            == 404
        )
        assert user.get(f"/api/v1/tree/recordings/{path}").status_code == 404

    # The town's own cameras are outside village-1.
    assert user.get("/api/v1/cameras").json() == []
    assert user.get("/api/v1/cameras/cam-t1").status_code == 404
    assert user.get("/api/v1/cameras/cam-t1/snapshot.jpg").status_code == 404
    assert user.get("/api/v1/recordings", params={"camera": "cam-t1"}).status_code == 404

    # Live video: out of scope is "unknown camera", not "offline".
    sdp = {"Content-Type": "application/sdp"}
    for path in ("village-2/cam-02", "cam-t1"):
        r = user.post(f"/api/v1/streams/{path}/whep", content=offer().encode(), headers=sdp)
        assert r.status_code == 404, r.text

    # Events: list, get, and the SSE stream.
    sse_lines: list[str] = []
    stop = threading.Event()

    def read_sse() -> None:
        try:
            with user.stream(
                "GET", "/api/v1/events/stream", timeout=httpx.Timeout(30, read=30)
            ) as r:
                for line in r.iter_lines():
                    sse_lines.append(line)
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            pass

    reader = threading.Thread(target=read_sse, daemon=True)
    reader.start()
    wait_for(lambda: any(": connected" in line for line in sse_lines), 10, "SSE connected")
    inside = _publish(town, "village-1/cam-01", "inside")
    outside = [
        _publish(town, "village-2/cam-02", "outside-2"),
        _publish(town, "cam-t1", "outside-t"),
    ]
    _publish(town, "village-1/cam-01", "last")
    wait_for(
        lambda: any('"last"' in line for line in sse_lines), 15, "the last in-scope event on SSE"
    )
    stop.set()
    sse = "\n".join(sse_lines)
    assert '"inside"' in sse
    assert '"outside-2"' not in sse and '"outside-t"' not in sse, sse

    listed = user.get("/api/v1/events", params={"limit": 500}).json()
    cameras = {e["camera"] for e in listed}
    assert cameras <= {"village-1/cam-01"} and inside in {e["id"] for e in listed}, cameras
    assert user.get(f"/api/v1/events/{inside}").status_code == 200
    for event_id in outside:
        assert user.get(f"/api/v1/events/{event_id}").status_code == 404
        assert user.post(f"/api/v1/events/{event_id}/ack").status_code == 404
        assert user.get(f"/api/v1/events/{event_id}/snapshot.jpg").status_code == 404

    # Operational views are filtered too.
    for url in ("/api/v1/streams", "/api/v1/relay/sessions", "/api/v1/recordings/status"):
        r = user.get(url)
        assert r.status_code in (200, 503), r.text
        assert "cam-t1" not in r.text and "village-2" not in r.text, (url, r.text[:300])
    metrics = user.get("/metrics")
    assert metrics.status_code == 200
    assert "cam-t1" not in metrics.text and "village-2" not in metrics.text, metrics.text[-2000:]

    # The admin (no scope) still sees everything, so the filtering above is real.
    everything = set(all_cameras(town.client.get("/api/v1/tree").json()))
    assert {"cam-t1", "village-1/cam-01", "village-2/cam-02"} <= everything
    admin_events = {
        e["id"] for e in town.client.get("/api/v1/events", params={"limit": 500}).json()
    }
    assert set(outside) <= admin_events


TRAVERSALS = [
    "/api/v1/recordings/../../../../etc/passwd",
    "/api/v1/recordings/..%2f..%2f..%2f..%2fetc%2fpasswd/clip.mp4",
    "/api/v1/recordings/%2e%2e/%2e%2e/%2e%2e/etc/passwd/clip.mp4",
    "/api/v1/recordings/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/segments/1.mp4",
    "/api/v1/recordings//etc/passwd/clip.mp4",
    "/api/v1/recordings/cam-t1/segments/..%2f..%2fgateway.db.mp4",
    "/api/v1/recordings/cam-t1/segments/%2fetc%2fpasswd.mp4",
    "/api/v1/tree/recordings/..%2f..%2f..%2fetc%2fpasswd/clip.mp4",
    "/api/v1/tree/recordings/%2e%2e/%2e%2e/etc/passwd",
    "/api/v1/tree/cameras/..%2f..%2fetc%2fpasswd/snapshot.jpg",
    "/api/v1/cameras/..%2f..%2fetc%2fpasswd/snapshot.jpg",
    "/api/v1/cameras/%2e%2e%2f%2e%2e%2fsecrets.json/snapshot.jpg",
    "/api/v1/events/..%2f..%2fsecrets.json/snapshot.jpg",
    "/api/v1/events/%2e%2e/snapshot.jpg",
    "/api/v1/streams/..%2f..%2fetc%2fpasswd/whep",
    "/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/js/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/js/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%252e%252e/%252e%252e/etc/passwd",
    "/..\\..\\..\\etc\\passwd",
    "//etc/passwd",
]


def _raw_get(port: int, target: str, token: str) -> tuple[int, bytes]:
    """GET with the target sent byte for byte (clients normalise '..' away)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_path_traversal_never_reaches_files_outside(gateway_factory) -> None:
    gw = gateway_factory(
        {
            "cameras": [{"id": "cam-t1", "rtsp_url": f"{NOWHERE}/t"}],
            "discovery": {"interval_s": 0},
            "relay": {"source_wait_s": 1},
        }
    )
    # The raw client works: a plain request succeeds.
    assert _raw_get(gw.port, "/api/v1/health", gw.token)[0] == 200
    for target in TRAVERSALS:
        for method_target in (target, target.replace("/etc/passwd", "/gw.yaml")):
            status, body = _raw_get(gw.port, method_target, gw.token)
            assert 400 <= status < 500, (method_target, status, body[:200])
            assert b"root:" not in body and b"secrets" not in body.lower().replace(
                b"secrets.json", b""
            ), (method_target, body[:300])
            assert b"SQLite format" not in body and b'"password"' not in body
    # The gateway is still healthy afterwards.
    assert gw.client.get("/api/v1/health").status_code == 200


def test_scoped_user_sees_only_linkage_rules_inside_their_subtree(town: Any) -> None:
    rules = [
        {"name": "inside", "match": {"camera": "village-1/*"}, "cameras": ["village-1/cam-01"]},
        {"name": "crosses", "match": {"camera": "village-1/*"}, "cameras": ["village-2/cam-02"]},
        {"name": "elsewhere", "match": {"camera": "village-2/*"}, "cameras": ["village-2/cam-02"]},
        {"name": "anywhere", "match": {"camera": "*"}, "cameras": ["village-1/cam-01"]},
    ]
    r = town.client.put("/api/v1/linkage", json=rules)
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["rules"]] == [x["name"] for x in rules]
    seen = _scoped(town).get("/api/v1/linkage").json()
    assert [x["name"] for x in seen["rules"]] == ["inside"]
    assert seen["stats"] == {}
