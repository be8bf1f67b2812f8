"""Live video in real headless Chromium: simulated camera → gateway → player page.

Processes: ``gateway sim`` (RTSP with the wall-clock barcode in the pixels), a
``gateway run`` listing the sim camera as a static camera, and Debian's Chromium
driven by Playwright. The page is our own ``player.html`` (WhepPlayer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright

from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS, INBOUND, READ_BARCODE
from tests.support import GatewayProcess, SimProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

# Unusual loopback addresses so other suites' simulators do not collide with ours.
H264_BASE, HEVC_BASE = "127.0.42.1", "127.0.43.1"


def _gateway(tmp: Path, name: str, cameras: list[dict[str, Any]]) -> GatewayProcess:
    return GatewayProcess(
        tmp,
        {
            "cameras": cameras,
            "relay": {"interfaces": ["127.0.0.1"]},
            "motion": {"enabled": False},
        },
        name=name,
    )


@pytest.fixture(scope="module")
def h264_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("live-h264")
    sim = SimProcess(
        tmp, "--cameras", "1", "--base", H264_BASE, "--size", "1280x720", "--gop", "50"
    )
    cam = sim.cameras[0]
    try:
        gw = _gateway(tmp, "gw", [{"id": "cam-01", "rtsp_url": cam["rtsp_main"]}])
    except BaseException:
        sim.stop()
        raise
    try:
        yield {"sim": sim, "gw": gw, "cam": cam}
    finally:
        gw.stop()
        sim.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _open_player(browser: Any, gw: GatewayProcess, camera: str) -> Any:
    page = browser.new_page()
    if gw.token:
        page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(gw.token)})")
    page.goto(f"{gw.base_url}/player.html?camera={camera}")
    page.add_script_tag(path=str(BARCODE_JS))
    page.evaluate("() => { window.sameDocument = 'yes'; }")
    return page


def _wait(page: Any, predicate: str, timeout: float) -> None:
    page.wait_for_function(predicate, timeout=timeout * 1000, polling=100)


def _barcodes(page: Any, n: int, gap: float = 0.1) -> list[dict[str, Any]]:
    out = []
    for _ in range(n * 3):
        code = page.evaluate(READ_BARCODE)
        if code:
            out.append(code)
            if len(out) >= n:
                break
        time.sleep(gap)
    return out


def _plays(page: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page plays and decodes over 20 frames in 2 s: its inbound figures, before and after."""
    _wait(page, "() => window.player && window.player.state === 'playing'", 20)
    first = page.evaluate(INBOUND)
    time.sleep(2)
    second = page.evaluate(INBOUND)
    assert second["framesDecoded"] > first["framesDecoded"] + 20, (first, second)
    return first, second


def test_simulated_camera_plays_its_own_picture(h264_rig: dict[str, Any], browser: Any) -> None:
    page = _open_player(browser, h264_rig["gw"], "cam-01")
    try:
        first, second = _plays(page)
        assert second["fps"] > 0
        assert second["readyState"] >= 2
        assert second["currentTime"] > first["currentTime"]
        codes = _barcodes(page, 5)
        assert len(codes) >= 3, "the barcode must be readable from the picture"
        assert {c["index"] for c in codes} == {h264_rig["cam"]["index"]}
        delays = sorted(c["now"] - c["ms"] for c in codes)
        assert delays[len(delays) // 2] < 1000, delays
    finally:
        page.close()


def test_second_viewer_joining_late_sees_a_frame_within_a_second(
    h264_rig: dict[str, Any], browser: Any
) -> None:
    first = _open_player(browser, h264_rig["gw"], "cam-01")
    try:
        _wait(first, "() => window.player && window.player.state === 'playing'", 20)
        time.sleep(1.3)  # join in the middle of the camera's 2 s GOP
        second = _open_player(browser, h264_rig["gw"], "cam-01")
        try:
            _wait(second, "() => window.player && window.player.timing.firstFrame", 10)
            timing = second.evaluate("() => window.player.timing")
            ttff_ms = timing["firstFrame"] - timing["offer"]
            assert ttff_ms <= 1000, f"time to first frame {ttff_ms:.0f} ms ({timing})"
            # It plays live, not a GOP behind.
            time.sleep(1.5)
            codes = _barcodes(second, 4)
            delays = sorted(c["now"] - c["ms"] for c in codes)
            assert delays and delays[len(delays) // 2] < 1000, delays
        finally:
            second.close()
    finally:
        first.close()


def test_chromium_plays_through_relay_worker_processes(
    h264_rig: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """``relay.workers: 2``: the same page and camera, sent by a worker process."""
    gw = GatewayProcess(
        tmp_path,
        {
            "cameras": [{"id": "cam-01", "rtsp_url": h264_rig["cam"]["rtsp_main"]}],
            "relay": {"interfaces": ["127.0.0.1"], "workers": 2},
            "motion": {"enabled": False},
        },
        name="gw-workers",
    )
    try:
        page = _open_player(browser, gw, "cam-01")
        try:
            _plays(page)
            codes = _barcodes(page, 4)
            assert {c["index"] for c in codes} == {h264_rig["cam"]["index"]}, codes
            relay = gw.client.get("/api/v1/relay/sessions").json()
            workers = relay["workers"]["workers"]
            assert len(workers) == 2 and all(w["alive"] for w in workers), workers
            assert sum(w["viewers"] for w in workers) == 1, workers
            assert sorted(w["feeds"] for w in workers) == [0, 1], workers
            (session,) = relay["sessions"]
            assert session["state"] == "connected" and session["units_sent"] > 20, session
        finally:
            page.close()
    finally:
        gw.stop()


def test_grid_page_plays_every_camera(h264_rig: dict[str, Any], browser: Any) -> None:
    gw: GatewayProcess = h264_rig["gw"]
    page = browser.new_page()
    try:
        if gw.token:
            page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(gw.token)})")
        page.goto(f"{gw.base_url}/grid.html")
        _wait(page, "() => document.querySelector('.tile[data-state=\"playing\"]')", 20)
        cams = page.evaluate("() => window.players.map((p) => p.camera)")
        assert cams == ["cam-01"]
    finally:
        page.close()


def test_camera_offline_and_back_resumes_without_reload(
    h264_rig: dict[str, Any], browser: Any
) -> None:
    sim: SimProcess = h264_rig["sim"]
    page = _open_player(browser, h264_rig["gw"], "cam-01")
    try:
        _wait(page, "() => window.player && window.player.state === 'playing'", 20)
        sim.fault("cam-01", "offline")
        time.sleep(3)
        before = page.evaluate(INBOUND)
        sim.fault("cam-01", "online")
        back_ms = time.time() * 1000
        deadline = time.monotonic() + 8
        fresh = None
        while time.monotonic() < deadline:
            code = page.evaluate(READ_BARCODE)
            if code and code["ms"] > back_ms:
                fresh = code
                break
            time.sleep(0.1)
        assert fresh is not None, "no picture from after the camera's return"
        resumed_s = (fresh["now"] - back_ms) / 1000
        assert resumed_s <= 5, f"resumed {resumed_s:.1f} s after the camera came back"
        after = page.evaluate(INBOUND) or {"framesDecoded": 0}
        assert page.evaluate("() => window.sameDocument") == "yes", "the page was reloaded"
        assert after["framesDecoded"] > 0 and (
            after["framesDecoded"] > before["framesDecoded"] or after != before
        )
    finally:
        page.close()


def test_hevc_camera_plays_through_the_transcoder(
    tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    tmp = tmp_path_factory.mktemp("live-hevc")
    sim = SimProcess(
        tmp, "--cameras", "1", "--base", HEVC_BASE, "--codec", "hevc", "--size", "640x360"
    )
    try:
        gw = _gateway(tmp, "gw-hevc", [{"id": "cam-h", "rtsp_url": sim.cameras[0]["rtsp_main"]}])
        try:
            page = _open_player(browser, gw, "cam-h")
            _wait(page, "() => window.player && window.player.state === 'playing'", 30)
            first = page.evaluate(INBOUND)
            time.sleep(2)
            second = page.evaluate(INBOUND)
            assert second["framesDecoded"] > first["framesDecoded"] + 15, (first, second)
            codes = _barcodes(page, 3)
            assert codes and {c["index"] for c in codes} == {sim.cameras[0]["index"]}
            sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
            assert [s["variant"] for s in sessions] == ["h264"]
            # The player was told so by the answer (the wall's tile shows "H.264 转码").
            served = page.evaluate("() => window.player.served")
            assert served == {"variant": "h264", "codec": "h264"}, served
            page.close()
        finally:
            gw.stop()
    finally:
        sim.stop()
