"""Debian's Chromium plays a simulated camera through Debian's Janus, on our WHEP URL.

Processes: ``gateway sim`` (RTSP with the wall-clock barcode), ``gateway run`` with
``relay.sfu`` pointing at a ``janus`` whose config this test writes (HTTP transport
on 127.0.0.1, streaming plugin only), and Chromium driven by Playwright on our own
``player.html``. Auth stays on: the page uses the operator's token as always.
Then Janus is killed mid-stream: the page's player notices its connection failing,
re-offers, and plays on from the direct relay.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright import sync_api as playwright

from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS, INBOUND, READ_BARCODE
from tests.janus_support import JanusServer, host_ip
from tests.relay_helpers import WhepClient
from tests.support import GatewayProcess, SimProcess, small_sim_args

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

BASE = "127.0.47.1"  # our own loopback address: no other suite's simulator collides
API_SECRET = "chromium-test-api-secret-5d1e"
ADMIN_KEY = "chromium-test-admin-key-0b7c"


@pytest.fixture
def rig(tmp_path: Any) -> Iterator[dict[str, Any]]:
    (tmp_path / "janus").mkdir()
    janus = JanusServer(tmp_path / "janus", api_secret=API_SECRET, admin_key=ADMIN_KEY).start()
    procs: list[Any] = []
    try:
        sim = SimProcess(tmp_path, *small_sim_args(BASE, fps=15, gop=15))
        procs.append(sim)
        gw = GatewayProcess(
            tmp_path,
            {
                "cameras": [{"id": "cam-01", "rtsp_url": sim.cameras[0]["rtsp_main"]}],
                "relay": {
                    "interfaces": ["127.0.0.1"],
                    "sfu": {
                        "url": janus.url,
                        "api_secret": API_SECRET,
                        "admin_key": ADMIN_KEY,
                        "request_timeout_s": 3,
                        "retry_s": 60,  # stays down for the fallback part of the test
                    },
                },
                "motion": {"enabled": False},
            },
        )
        procs.append(gw)
        yield {"janus": janus, "sim": sim, "gw": gw}
    finally:
        for proc in reversed(procs):
            proc.stop()
        janus.stop()


class AiortcViewer:
    """An aiortc WHEP client on its own thread and event loop (Playwright's sync API
    owns this one)."""

    def __init__(self, base_url: str, path: str, token: str) -> None:
        self.base_url, self.path, self.token = base_url, path, token
        self.status = 0
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            client = WhepClient(http, self.path, decode_every=1000, addresses=(host_ip(),))
            try:
                r = await client.start(headers={"Authorization": f"Bearer {self.token}"})
                self.status = r.status_code
                while not self._stop.is_set():
                    self.frames = client.received.frames
                    await asyncio.sleep(0.1)
            finally:
                await client.stop()

    def start(self) -> AiortcViewer:
        self._thread.start()
        return self

    def wait_frames(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.frames < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.frames >= n

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _wait(page: Any, predicate: str, timeout: float) -> None:
    page.wait_for_function(predicate, timeout=timeout * 1000, polling=100)


def _frames_rise(page: Any, at_least: int, seconds: float = 1.0) -> dict[str, Any]:
    first = page.evaluate(INBOUND)
    time.sleep(seconds)
    second = page.evaluate(INBOUND)
    assert second["framesDecoded"] >= first["framesDecoded"] + at_least, (first, second)
    assert second["readyState"] >= 2 and second["currentTime"] > first["currentTime"]
    return second


def _barcode_index(page: Any) -> int | None:
    for _ in range(30):
        code = page.evaluate(READ_BARCODE)
        if code:
            return int(code["index"])
        time.sleep(0.1)
    return None


def test_chromium_plays_through_janus_and_falls_back_when_it_stops(
    rig: dict[str, Any],
) -> None:
    gw: GatewayProcess = rig["gw"]
    url = f"{gw.base_url}/api/v1/streams/cam-01/whep"
    # Same auth as ever: no token, no offer.
    anonymous = httpx.post(
        url, content="v=0\r\n", headers={"Content-Type": "application/sdp"}, timeout=10
    )
    assert anonymous.status_code == 401, anonymous.text

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(gw.token)})")
            page.goto(f"{gw.base_url}/player.html?camera=cam-01")
            page.add_script_tag(path=str(BARCODE_JS))
            _wait(page, "() => window.player && window.player.state === 'playing'", 30)
            _frames_rise(page, 5)
            assert _barcode_index(page) == rig["sim"].cameras[0]["index"]

            status = gw.client.get("/api/v1/relay/sessions").json()
            assert [s.get("via") for s in status["sessions"]] == ["sfu"], status
            feeds = status["sfu"]["feeds"]
            assert len(feeds) == 1 and feeds[0]["bytes_sent"] > 0, status["sfu"]

            # An aiortc viewer of the same camera, at the same time, through Janus too.
            aio = AiortcViewer(gw.base_url, "/api/v1/streams/cam-01/whep", gw.token or "").start()
            try:
                assert aio.wait_frames(10, 30), f"aiortc viewer: HTTP {aio.status}, no frames"
                status = gw.client.get("/api/v1/relay/sessions").json()
                assert [s.get("via") for s in status["sessions"]] == ["sfu", "sfu"], status
                feeds = status["sfu"]["feeds"]
                pts = sorted(f["payload_type"] for f in feeds)
                # One feed per H.264 payload numbering among the camera's viewers (Janus
                # 1.1.2 sends its mountpoint's payload type to every viewer).
                assert len(pts) == len(set(pts)), feeds
                print(f"\nChromium + aiortc on one camera: payload types {pts}, {len(feeds)} feeds")
            finally:
                aio.stop()
            _frames_rise(page, 5)

            rig["janus"].kill()  # mid-stream
            # The player's connection fails; it re-offers and lands on the direct relay.
            _wait(
                page, "() => window.player.sessions >= 2 && window.player.state === 'playing'", 60
            )
            _frames_rise(page, 5)
            status = gw.client.get("/api/v1/relay/sessions").json()
            assert status["sfu"]["up"] is False, status["sfu"]
            assert [s.get("via", "direct") for s in status["sessions"]] == ["direct"], status
            assert API_SECRET not in gw.tail(10**7) and ADMIN_KEY not in gw.tail(10**7)
        finally:
            browser.close()
