"""WHIP out: the gateway publishes a camera to a WHIP server (RFC 9725) and keeps it up.

The WHIP server is a small one written here on aiohttp + aiortc (real HTTP and real
WebRTC on loopback): it checks the bearer token, answers the offer, decodes what it
receives (reading the camera's barcode), and counts DELETEs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from gateway.app import Gateway
from gateway.config import Settings
from gateway.relay.ice import host_addresses
from gateway.sim import barcode
from gateway.streams.hub import Hub
from tests.relay_helpers import EncodedCamera, HubStreams, install_streams

pytestmark = pytest.mark.timeout(120)

CAM = "cam-01"
TOKEN = "whip-token-never-logged-3e8d"


class WhipServer:
    """A WHIP endpoint: ``POST /whip/{name}`` → 201 answer, ``DELETE`` the resource."""

    def __init__(self) -> None:
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.frames = 0
        self.indexes: set[int] = set()
        self.refused = 0
        self.deleted = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> WhipServer:
        app = web.Application()
        app.router.add_post("/whip/{name}", self._post)
        app.router.add_delete("/whip/{name}/{rid}", self._delete)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/whip"
        return self

    async def stop(self) -> None:
        for pc in list(self.pcs.values()):
            await pc.close()
        for task in self._tasks:
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _post(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.refused += 1
            return web.Response(status=401, text="bad token")
        if request.content_type != "application/sdp":
            return web.Response(status=415)
        pc = RTCPeerConnection()
        pc.on("track", lambda track: self._watch(track))
        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        with host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createAnswer())
        rid = secrets.token_hex(6)
        self.pcs[rid] = pc
        location = f"/whip/{request.match_info['name']}/{rid}"
        return web.Response(
            status=201,
            text=pc.localDescription.sdp,
            content_type="application/sdp",
            headers={"Location": location},
        )

    async def _delete(self, request: web.Request) -> web.Response:
        pc = self.pcs.pop(request.match_info["rid"], None)
        if pc is None:
            return web.Response(status=404)
        self.deleted += 1
        await pc.close()
        return web.Response(status=200)

    def _watch(self, track: Any) -> None:
        task = asyncio.ensure_future(self._read(track))
        self._tasks.add(task)

    async def _read(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames += 1
                if self.frames % 5 == 0:
                    plane = frame.planes[0]
                    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
                    code = barcode.decode(luma[:, : frame.width])
                    if code is not None:
                        self.indexes.add(code[1])
        except Exception:
            return


async def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return bool(predicate())


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    server = await WhipServer().start()
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "auth": {"enabled": False},
            "relay": {
                "interfaces": ["127.0.0.1"],
                "whip_out": [
                    {"camera": CAM, "url": f"{server.url}/{CAM}", "token": TOKEN},
                    {"camera": CAM, "url": f"{server.url}/wrong", "token": "not-the-token"},
                ],
            },
        }
    )
    gw = Gateway(settings)
    gw.whip_out.retry_s = 0.5
    hub = Hub(f"{CAM}/main")
    camera = EncodedCamera(hub, width=320, height=180, fps=15, gop=15, index=9).start()
    install_streams(gw, HubStreams({(CAM, None): hub}))
    await gw.start()
    try:
        yield {"gw": gw, "server": server, "hub": hub}
    finally:
        camera.stop()
        await gw.stop()
        await server.stop()


async def test_camera_published_over_whip_plays_at_the_server_and_is_deleted_on_stop(
    rig: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw, server = rig["gw"], rig["server"]
    part = gw.whip_out
    assert await _until(lambda: server.frames >= 15, 30), part.status()
    assert await _until(lambda: 9 in server.indexes, 10), "the camera's barcode, decoded"
    good, bad = part.status()
    assert good["state"] == "connected" and good["bytes_sent"] > 0 and good["error"] is None
    # A refused publication says why, is retried, and never brings the part down.
    assert await _until(lambda: server.refused >= 2, 10)
    assert "HTTP 401" in (part.status()[1]["error"] or ""), part.status()
    assert bad["state"] == "retrying"
    assert len(server.pcs) == 1  # one upstream for the camera at this server
    connected = [m.value for m in part.metrics() if m.name == "whip_out_connected"]
    assert sorted(connected) == [0, 1], connected
    await gw.whip_out.stop()
    assert server.deleted == 1 and not server.pcs
    assert TOKEN not in caplog.text and "not-the-token" not in caplog.text
