"""Headless Chromium at the city plays a village camera through the town.

Processes: ``gateway sim`` under the village, three ``gateway run`` (city ← town ←
village), Debian's Chromium via Playwright on the city's own ``player.html``.
The barcode in the pixels proves it is the village camera, live.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright import sync_api as playwright

from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS, INBOUND, READ_BARCODE
from tests.cascade_support import all_cameras, start_levels, wait_for
from tests.support import GatewayProcess, SimProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CAM = "town-a/village-1/cam-01"


def test_city_browser_plays_a_village_camera_through_the_town(tmp_path: Path) -> None:
    procs: list = []
    try:
        sim = SimProcess(
            tmp_path,
            "--cameras",
            "1",
            "--base",
            "127.0.71.1",
            "--size",
            "1280x720",
            "--gop",
            "25",
            name="sim",
        )
        procs.append(sim)
        cam = sim.cameras[0]
        url = f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main"

        def start(cfg, name):
            cfg = {**cfg, "relay": {"interfaces": ["127.0.0.1"]}, "motion": {"enabled": False}}
            gw = GatewayProcess(tmp_path, cfg, name=name)
            procs.append(gw)
            return gw

        lv = start_levels(start, village_extra={"cameras": [{"id": "cam-01", "rtsp_url": url}]})
        wait_for(
            lambda: CAM in all_cameras(lv.city.client.get("/api/v1/tree").json()),
            20,
            "the village camera in the city's tree",
        )
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                if lv.city.token:
                    token = json.dumps(lv.city.token)
                    page.add_init_script(f"localStorage.setItem('gw_token', {token})")
                page.goto(f"{lv.city.base_url}/player.html?camera={CAM}")
                page.add_script_tag(path=str(BARCODE_JS))
                page.wait_for_function(
                    "() => window.player && window.player.state === 'playing'",
                    timeout=30_000,
                    polling=100,
                )
                first = page.evaluate(INBOUND)
                time.sleep(2)
                second = page.evaluate(INBOUND)
                assert second["framesDecoded"] > first["framesDecoded"] + 20, (first, second)
                assert second["fps"] > 0 and second["readyState"] >= 2
                assert second["currentTime"] > first["currentTime"]
                codes = []
                for _ in range(30):
                    code = page.evaluate(READ_BARCODE)
                    if code:
                        codes.append(code)
                        if len(codes) >= 5:
                            break
                    time.sleep(0.1)
                assert len(codes) >= 3, "the village camera's barcode must be readable"
                assert {c["index"] for c in codes} == {cam["index"]}
                delays = sorted(c["now"] - c["ms"] for c in codes)
                assert delays[len(delays) // 2] < 1000, delays
            finally:
                browser.close()
        # The village sent one stream up, the town one to the city.
        up = lv.village.client.get("/api/v1/cascade").json()["uplink"]
        assert up["bytes_out"] > 100_000
    finally:
        for proc in reversed(procs):
            proc.stop()
