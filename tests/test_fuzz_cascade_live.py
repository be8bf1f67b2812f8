"""Fuzzing a parent's cascade WebSocket as a (hostile) child, over real loopback.

A town gateway issues a child token; the test connects with it, says hello and
sends a catalog like a village would, then sends mutated and semantically hostile
messages (paths outside its subtree, deltas for unknown nodes, responses to
requests never made, streams never opened, events of other gateways' cameras,
garbage text and binary frames). After each one a heartbeat must still be
answered: the parent drops what it rejects and keeps the session. At the end the
town is healthy, its tree holds nothing outside ``village-1`` and its log no
traceback.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gateway.events.model import Event
from tests.cascade_support import all_cameras, issue_token_api, wait_for
from tests.test_fuzz_parsers import VALID_CHILD, json_values, mutated_json

CHILD = "village-1"


def _event(seq: int, camera: str = f"{CHILD}/cam-01") -> dict[str, Any]:
    ev = Event(camera=camera, type="custom", data={"n": seq}).model_dump(mode="json")
    return {"type": "events", "items": [{"seq": seq, "event": ev}]}


HOSTILE = [
    # Paths outside the child's own subtree, or not paths at all.
    {"type": "camera", "camera": {"id": "cam-9", "path": "village-2/cam-9", "status": "online"}},
    {"type": "camera", "camera": {"id": "cam-9", "path": "cam-9", "status": "online"}},
    {"type": "camera", "camera": {"id": "cam-9", "path": f"{CHILD}/x/cam-9"}},
    {"type": "node", "node": {"id": "village-2", "path": "village-2"}},
    {"type": "node", "node": {"id": "x", "path": f"{CHILD}/nowhere/x"}},
    {"type": "node", "node": {"id": CHILD, "path": CHILD, "cameras": [{"id": "a", "path": "b/a"}]}},
    {"type": "catalog", "tree": {"id": "village-2", "path": "village-2"}},
    {"type": "catalog", "tree": {"id": CHILD, "path": "town-a"}},
    # Answers to nothing, streams never opened.
    {"type": "response", "id": "999", "ok": True, "status": 200, "data": {"x": [1, 2]}},
    {"type": "response", "id": "", "ok": False, "status": 599},
    {"type": "stream_info", "channel": 77, "codec": "h264", "width": 16384, "height": 16384},
    {"type": "stream_end", "channel": 2**31, "reason": "x" * 512},
    # Events of someone else's cameras, duplicated and out-of-order sequence numbers.
    {"type": "events", "items": [{"seq": 1, "event": {"camera": "village-2/cam-01", "type": "x"}}]},
    {"type": "events", "items": [{"seq": 10**15, "event": {"camera": "", "type": "x"}}]},
    {"type": "heartbeat", "time": -1e308},
    {"type": "hello", "gateway": CHILD},
    {"type": "welcome", "parent": "x"},
    {"type": "request", "op": "snapshot", "path": "town-a/cam-01"},
]


def _frame(kind: bytes, channel: int, payload: bytes) -> bytes:
    return struct.pack(">cBIqqIIdI", kind, 1, channel, 0, 0, 1, 90000, 1.0, 0) + payload


class Child:
    """One child session on the parent's WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ws.send(json.dumps({"type": "hello", "v": 1, "gateway": CHILD, "level": "village"}))
        welcome = json.loads(self.ws.recv(timeout=10))
        assert welcome["type"] == "welcome", welcome
        self.seq = welcome.get("last_seq", 0)
        catalog = {
            "type": "catalog",
            "tree": {
                "id": CHILD,
                "path": CHILD,
                "cameras": [{"id": "cam-01", "path": f"{CHILD}/cam-01", "status": "online"}],
            },
        }
        self.ws.send(json.dumps(catalog))

    def alive(self) -> None:
        """A heartbeat is answered with a heartbeat: the session survived."""
        self.ws.send(json.dumps({"type": "heartbeat", "time": 1.0}))
        for _ in range(50):
            msg = json.loads(self.ws.recv(timeout=10))
            if msg.get("type") == "heartbeat":
                return
        raise AssertionError("no heartbeat answer")

    def event(self) -> None:
        self.seq += 1
        self.ws.send(json.dumps(_event(self.seq)))


@pytest.fixture
def town(gateway_factory) -> Any:
    return gateway_factory(
        {
            "discovery": {"interval_s": 0},
            "cascade": {"level": "town", "id": "town-a", "heartbeat_s": 1.0, "offline_after_s": 30},
        },
        name="town",
    )


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_hostile_child_messages_are_dropped_and_the_session_lives(town: Any) -> None:
    url = town.base_url.replace("http://", "ws://") + "/api/v1/cascade/ws"
    token = issue_token_api(town, CHILD)
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        _fuzz_session(Child(ws))

    # The town is healthy and shows nothing the child had no right to add.
    assert town.client.get("/api/v1/health").status_code == 200
    cams = wait_for(lambda: all_cameras(town.client.get("/api/v1/tree").json()), 10, "tree")
    assert all(path.startswith(CHILD + "/") for path in cams), cams
    events = town.client.get("/api/v1/events", params={"limit": 500}).json()
    assert all(e["camera"].startswith(CHILD) for e in events if e["type"] == "custom"), events
    stats = next(
        c for c in town.client.get("/api/v1/cascade").json()["children"] if c["name"] == CHILD
    )
    assert stats["rejected"] >= len(HOSTILE) // 2, stats
    log = town.log_path.read_text("utf-8", "replace")
    assert "Traceback" not in log, log[-4000:]


def _fuzz_session(child: Child) -> None:
    """Hostile messages one by one, then generated ones; a heartbeat after each."""
    child.alive()
    for msg in HOSTILE:
        try:
            child.ws.send(json.dumps(msg))
            child.alive()
        except ConnectionClosed as err:
            raise AssertionError(f"the parent dropped the session after {msg}: {err}") from None
    child.event()

    seeds = [*VALID_CHILD, *HOSTILE, _event(1)]

    @FUZZ
    @given(
        st.one_of(
            mutated_json(seeds),
            st.dictionaries(st.sampled_from(["type", "v", "id", "items", "tree"]), json_values).map(
                json.dumps
            ),
            st.binary(max_size=100),
            st.tuples(
                st.sampled_from([b"M", b"D", b"Q"]),
                st.integers(0, 2**32 - 1),
                st.binary(max_size=50),
            ).map(lambda t: _frame(*t)),
        )
    )
    def fuzz(data: str | bytes) -> None:
        try:
            child.ws.send(data)
            child.alive()
        except ConnectionClosed as err:
            raise AssertionError(
                f"the parent dropped the session after {data!r:.300}: {err}"
            ) from None

    fuzz()
    child.event()
    child.alive()
