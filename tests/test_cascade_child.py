"""A real village gateway process against a scripted parent: the child side of the protocol.

The parent here is a plain WebSocket server in the test, so every request and every
answer is visible: the low variant is made at the village (where the camera is), a
snapshot comes back in data frames, bad requests get clear answers, junk is ignored.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.server import serve

from gateway.cascade import protocol as p
from tests.cascade_support import wait_for

pytestmark = pytest.mark.slow


class ScriptedParent:
    def __init__(self) -> None:
        self.ws = None
        self.connected = asyncio.Event()
        self.texts: list[dict] = []
        self.frames: list[p.Frame] = []
        self.auth = ""

    async def handler(self, ws) -> None:
        self.auth = ws.request.headers.get("Authorization", "")
        async for raw in ws:
            if isinstance(raw, bytes):
                self.frames.append(p.decode_frame(raw))
                continue
            msg = json.loads(raw)
            self.texts.append(msg)
            if msg["type"] == "hello":
                await ws.send(json.dumps({"type": "welcome", "parent": "town-a", "last_seq": 0}))
                self.ws = ws
                self.connected.set()
            elif msg["type"] == "heartbeat":
                await ws.send(json.dumps({"type": "heartbeat"}))

    async def request(self, rid: str, op: str, path: str, channel: int = 0, **params) -> dict:
        await self.ws.send(
            json.dumps(
                {
                    "type": "request",
                    "id": rid,
                    "op": op,
                    "path": path,
                    "channel": channel,
                    "params": params,
                }
            )
        )
        for _ in range(300):
            for msg in self.texts:
                if msg["type"] == "response" and msg["id"] == rid:
                    return msg
            await asyncio.sleep(0.05)
        raise AssertionError(f"no response to {rid}")


def test_the_child_serves_the_parents_requests(gateway_factory, sim_factory):
    sim = sim_factory(
        "--cameras",
        "1",
        "--base",
        "127.0.73.1",
        "--size",
        "1280x720",
        "--gop",
        "25",
        name="child-sim",
    )
    cam = sim.cameras[0]
    url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"
    parent = ScriptedParent()
    loop = asyncio.new_event_loop()

    async def start_server():
        return await serve(parent.handler, "127.0.0.1", 0)

    server = loop.run_until_complete(start_server())
    port = server.sockets[0].getsockname()[1]
    try:
        village = gateway_factory(
            {
                "cameras": [{"id": "cam-01", "rtsp_url": url}],
                "motion": {"enabled": False},
                "cascade": {
                    "id": "village-1",
                    "level": "village",
                    "parent": {"url": f"http://127.0.0.1:{port}", "token": "gwc_secret"},
                },
            },
            name="village",
        )

        async def scenario() -> None:
            await asyncio.wait_for(parent.connected.wait(), 20)
            assert parent.auth == "Bearer gwc_secret"
            # The catalog follows the hello on the same connection; it may still be in flight.
            catalog = None
            for _ in range(200):
                catalog = next((m for m in parent.texts if m["type"] == "catalog"), None)
                if catalog is not None:
                    break
                await asyncio.sleep(0.05)
            assert catalog is not None, "no catalog after the hello"
            assert [c["path"] for c in catalog["tree"]["cameras"]] == ["village-1/cam-01"]

            # Junk from the parent is ignored; the link stays up.
            await parent.ws.send(b"\x00garbage")
            await parent.ws.send('{"type": "reboot"}')

            # The low variant is transcoded at the village, where the camera is.
            r = await parent.request(
                "s1", "open_stream", "cam-01", 1, profile="main", variant="low"
            )
            assert r["ok"], r
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                media = [f for f in parent.frames if f.channel == 1 and f.au is not None]
                if len(media) >= 30:
                    break
                await asyncio.sleep(0.1)
            assert len(media) >= 30
            assert media[0].au.keyframe and media[0].au.data[:4] in (b"\x00\x00\x00\x01",)
            info = next((m for m in parent.texts if m["type"] == "stream_info"), None)
            assert info is not None, "no stream_info before the media"
            assert (info["codec"], info["width"], info["height"]) == ("h264", 640, 360)
            r = await parent.request("c1", "close_stream", "cam-01", 1)
            assert r["ok"]

            # A snapshot comes back as data frames, then the response.
            r = await parent.request("p1", "snapshot", "cam-01", 2)
            assert r["ok"] and r["data"]["content_type"] == "image/jpeg"
            body = b"".join(f.payload for f in parent.frames if f.channel == 2)
            assert body[:2] == b"\xff\xd8" and len(body) == r["data"]["bytes"]

            # Clear answers to what cannot be done.
            r = await parent.request("u1", "snapshot", "cam-99", 3)
            assert (r["ok"], r["status"]) == (False, 404)
            r = await parent.request("u2", "open_stream", "cam-01", 4, variant="8k")
            assert (r["ok"], r["status"]) == (False, 400)
            r = await parent.request("u3", "record", "cam-01", 0, seconds=-5)
            assert (r["ok"], r["status"]) == (False, 400)
            r = await parent.request("u4", "ptz", "elsewhere/cam-01", 0, action="stop")
            assert (r["ok"], r["status"]) == (False, 404)

        loop.run_until_complete(scenario())
        wait_for(
            lambda: not village.client.get("/api/v1/cascade").json()["uplink"]["streams"],
            10,
            "the stream closed at the village",
        )
        assert village.client.get("/api/v1/cascade").json()["uplink"]["connected"]
        assert "gwc_secret" not in village.tail(50000)
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
