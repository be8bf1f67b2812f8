"""The video wall's and alarm list's operator features in Chromium, at the city.

Drag a camera onto a tile, double-click for full screen, the low-bitrate variant of
one tile, the PTZ pad of a remote PTZ camera (the town's ONVIF sim camera, moved
through the tree), acknowledging an alarm, and the wall layout saved per operator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_ui_operator import assert_tiles_play, frames
from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PTZ_CAM = "town-a/cam-01"  # ONVIF, PTZ; one hop below the city
OTHER_CAM = "town-a/cam-02"


@pytest.fixture(scope="module")
def page(ui_system: UiSystem) -> Iterator[Any]:
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.errors = errors
        ui_login(p, ui_system.city.base_url)
        yield p
        assert not errors, errors
        p.context.close()


def ptz_status(cam: dict[str, Any]) -> tuple[float, str]:
    """(pan, PanTilt move status) of a sim camera, read over ONVIF as any client would."""
    from onvif import ONVIFCamera

    async def read() -> tuple[float, str]:
        client = ONVIFCamera(cam["address"], cam["http_port"], cam["username"], cam["password"])
        try:
            await client.update_xaddrs()
            ptz = await client.create_ptz_service()
            status = await ptz.GetStatus({"ProfileToken": "profile_main"})
            return float(status.Position.PanTilt.x), str(status.MoveStatus.PanTilt)
        finally:
            await client.close()

    # Playwright's sync API runs an event loop in this thread: use another thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=30)


def tile(i: int) -> str:
    return f'.tile[data-index="{i}"]'


def show_both(page: Any) -> None:
    """Four tiles, OTHER_CAM (main stream) in tile 0 and PTZ_CAM in tile 1.

    What the tests below assert on, set up by each itself: any of them may run alone,
    or after any other (the module's page is shared).
    """
    if page.evaluate("() => window.gw.wall.layout") != 4:
        page.click('.layout-btn[data-layout="4"]')
    for i, ref in enumerate([OTHER_CAM, PTZ_CAM]):
        placed = (
            page.get_attribute(tile(i), "data-camera"),
            page.get_attribute(tile(i), "data-variant"),
        )
        if placed != (ref, "main"):
            page.evaluate("([i, ref]) => window.gw.wall.tiles[i].play(ref)", [i, ref])
    page.wait_for_function(
        "(refs) => refs.every((ref, i) => window.gw.wall.tiles[i].ref === ref)",
        arg=[OTHER_CAM, PTZ_CAM],
    )


def test_drag_a_camera_onto_a_tile_and_double_click_for_full_screen(page: Any) -> None:
    page.click('.layout-btn[data-layout="4"]')
    page.drag_and_drop(f'.tree-cam[data-camera="{PTZ_CAM}"]', tile(1))
    page.drag_and_drop(f'.tree-cam[data-camera="{OTHER_CAM}"]', tile(0))
    assert_tiles_play(page, [OTHER_CAM, PTZ_CAM])
    assert page.get_attribute(tile(1), "data-camera") == PTZ_CAM
    page.dblclick(f"{tile(1)} video")
    page.wait_for_function(
        "() => document.fullscreenElement && document.fullscreenElement.dataset.index === '1'"
    )
    shot(page, "10-fullscreen")
    page.dblclick(f"{tile(1)} video")
    page.wait_for_function("() => !document.fullscreenElement")


def test_a_tile_switches_to_the_low_bitrate_variant(page: Any) -> None:
    show_both(page)
    with page.expect_request(lambda r: "whep?variant=low" in r.url and r.method == "POST") as req:
        page.hover(tile(0))
        page.click(f"{tile(0)} .variant-btn")
    assert f"/api/v1/streams/{OTHER_CAM}/whep?variant=low" in req.value.url
    assert page.get_attribute(tile(0), "data-variant") == "low"
    assert page.inner_text(f"{tile(0)} .overlay .variant") == "低码率"
    page.wait_for_selector(f'{tile(0)}[data-served="low"]', timeout=30_000)
    rates = assert_tiles_play(page, [OTHER_CAM, PTZ_CAM], timeout=40)
    width = page.evaluate(f"() => document.querySelector('{tile(0)} video').videoWidth")
    print("low variant frames/s:", {k: round(v, 1) for k, v in rates.items()}, "width", width)
    assert 0 < width <= 640
    # And back to the main stream.
    page.hover(tile(0))
    page.click(f"{tile(0)} .variant-btn")
    assert page.get_attribute(tile(0), "data-variant") == "main"
    # An H.264 camera to Chromium: the main stream untouched, and the tile says so.
    page.wait_for_selector(f'{tile(0)}[data-served="main"]', timeout=30_000)
    assert page.inner_text(f"{tile(0)} .overlay .variant") == "H.264 直通"


def test_ptz_pad_moves_a_remote_ptz_camera(page: Any, ui_system: UiSystem) -> None:
    show_both(page)
    assert page.is_hidden(f"{tile(0)} .ptz-btn")  # cam-02 is RTSP only: no PTZ
    page.hover(tile(1))
    page.click(f"{tile(1)} .ptz-btn")
    pad = page.locator(f"{tile(1)} .ptz")
    pad.wait_for()
    right = pad.locator('button[data-ptz="▶"]')
    box = right.bounding_box()
    with page.expect_response(
        lambda r: r.url.endswith(f"/api/v1/tree/cameras/{PTZ_CAM}/ptz")
    ) as moved:
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
    assert moved.value.status == 200, moved.value.text()
    assert moved.value.request.post_data_json["pan"] > 0
    cam = ui_system.town_sim.cameras[0]
    wait_for(lambda: ptz_status(cam)[0] > 0.02, 10, "the sim camera panning right", every=0.3)
    shot(page, "11-ptz")
    with page.expect_response(lambda r: r.url.endswith("/ptz")) as stopped:
        page.mouse.up()
    assert stopped.value.status == 200
    assert stopped.value.request.post_data_json == {"action": "stop"}
    pan, status = ptz_status(cam)
    assert status == "IDLE"
    time.sleep(0.5)
    assert ptz_status(cam)[0] == pytest.approx(pan, abs=1e-3)
    # The remote camera's presets are listed through the tree: pick Home (pan 0).
    page.wait_for_selector(f'{tile(1)} .ptz-presets option[value="preset_1"]', state="attached")
    with page.expect_response(lambda r: r.url.endswith("/ptz")) as went:
        page.select_option(f"{tile(1)} .ptz-presets", "preset_1")
    assert went.value.status == 200, went.value.text()
    assert went.value.request.post_data_json == {"action": "goto_preset", "preset": "preset_1"}
    wait_for(lambda: abs(ptz_status(cam)[0]) < 0.01, 10, "the camera back at its Home preset")
    page.click(f"{tile(1)} .ptz-btn")  # the pad closes again
    assert page.locator(f"{tile(1)} .ptz").count() == 0


def test_an_alarm_is_acknowledged(page: Any, ui_system: UiSystem) -> None:
    r = ui_system.city.client.post(
        "/api/v1/events", json={"camera": OTHER_CAM, "type": "alarm", "data": {"note": "ui test"}}
    )
    assert r.status_code == 201, r.text
    event_id = r.json()["id"]
    row = page.locator(f'#alarm-list li[data-id="{event_id}"]')
    row.wait_for(timeout=10_000)
    assert row.locator(".cam").inner_text() == "城关镇 · 镇中心街"  # the place, then the name
    row.locator("button.ack").click()
    row.locator(".acked-label").wait_for(timeout=10_000)
    assert row.locator(".acked-label").inner_text() == "已确认"
    stored = ui_system.city.client.get(f"/api/v1/events/{event_id}").json()
    assert stored["acknowledged"] is True
    assert stored["data"]["acknowledged_by"] == "admin"
    # The "unacknowledged only" filter hides it; the type filter narrows to alarms.
    page.check("#alarm-unacked")
    row.wait_for(state="detached")
    page.uncheck("#alarm-unacked")
    page.select_option("#alarm-type", "camera_online")
    row.wait_for(state="detached")
    page.select_option("#alarm-type", "")
    row.wait_for()


def test_a_linkage_only_highlights_when_the_operator_says_so(page: Any) -> None:
    show_both(page)
    before = [r for r, _, _ in frames(page)]
    page.uncheck("#auto-switch")
    # A linkage instruction as the SSE stream delivers it (the real one is in test_ui_operator).
    page.evaluate(
        """(cams) => window.gw.alarms.receive({ id: "ui-test-linkage", type: "linkage",
        camera: cams[0], start: new Date().toISOString(), acknowledged: false,
        data: { rule: "测试预案", cameras: cams, wall: true } })""",
        [PTZ_CAM, "town-a/village-1/cam-04"],
    )
    assert [r for r, _, _ in frames(page)] == before  # not switched
    assert "highlight" in page.get_attribute(tile(1), "class")
    assert "highlight" not in page.get_attribute(tile(0), "class")
    assert page.inner_text("#wall-notice") == "联动：已高亮预案画面：测试预案"
    # The choice is the operator's own, kept for the next login.
    assert page.evaluate("() => localStorage.getItem('gw_auto_switch_admin')") == "0"
    page.check("#auto-switch")
    assert page.evaluate("() => localStorage.getItem('gw_auto_switch_admin')") == "1"


def test_the_wall_layout_is_saved_per_operator(page: Any, ui_system: UiSystem) -> None:
    show_both(page)
    page.click('.layout-btn[data-layout="9"]')
    page.click("#wall-save")
    page.wait_for_function(
        "() => document.querySelector('#wall-notice').textContent === '布局已保存'"
    )
    saved = [r for r, _, _ in frames(page)]
    assert len(saved) == 9 and saved[:2] == [OTHER_CAM, PTZ_CAM]
    page.reload()
    page.wait_for_selector("body[data-ready] #app-view:not([hidden]) .tree-node")
    page.wait_for_function("() => window.gw.wall && window.gw.wall.layout === 9")
    assert [r for r, _, _ in frames(page)] == saved
    assert_tiles_play(page, saved[:2])

    # Another operator on the same browser gets their own (empty) wall, not admin's.
    r = ui_system.city.client.post(
        "/api/v1/auth/users",
        json={"username": "op-li", "password": "op-li-password", "role": "operator"},
    )
    assert r.status_code in (201, 409), r.text
    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    ui_login(page, ui_system.city.base_url, "op-li", "op-li-password")
    assert page.inner_text("#user-name") == "op-li (操作员)"
    assert page.evaluate("() => window.gw.wall.layout") == 4
    assert all(r is None for r, _, _ in frames(page))
    page.click('.layout-btn[data-layout="1"]')
    page.click("#wall-save")
    page.wait_for_function(
        "() => document.querySelector('#wall-notice').textContent === '布局已保存'"
    )
    page.click("#logout")
    page.wait_for_selector("#login-form", state="visible")
    ui_login(page, ui_system.city.base_url)
    page.wait_for_function("() => window.gw.wall.layout === 9")
    assert [r for r, _, _ in frames(page)] == saved
    # Kept on the gateway, not only in this browser: another workstation (no local
    # storage) gets the same wall.
    assert ui_system.city.client.get("/api/v1/ui/layout").json()["layout"] == 9
    page.evaluate("() => localStorage.clear()")
    page.reload()
    page.wait_for_selector("body[data-ready] #app-view:not([hidden]) .tree-node")
    page.wait_for_function("() => window.gw.wall && window.gw.wall.layout === 9")
    assert [r for r, _, _ in frames(page)] == saved


def test_a_tile_reconnects_by_itself_when_its_camera_comes_back(
    page: Any, ui_system: UiSystem
) -> None:
    page.click('.layout-btn[data-layout="4"]')
    page.evaluate("(ref) => window.gw.wall.tiles[0].play(ref)", OTHER_CAM)
    assert_tiles_play(page, [OTHER_CAM])
    sim_cam = ui_system.town_sim.cameras[1]["id"]
    ui_system.town_sim.fault(sim_cam, "offline")
    try:
        wait_for(
            lambda: page.get_attribute(tile(0), "data-state") in ("reconnecting", "offline"),
            30,
            "the tile noticing the camera is gone",
            every=0.2,
        )
        state = page.inner_text(f"{tile(0)} .state")
        assert state in ("重连中", "离线"), state
        shot(page, "17-tile-reconnecting")
    finally:
        ui_system.town_sim.fault(sim_cam, "online")
    assert_tiles_play(page, [OTHER_CAM], timeout=60)
    assert page.inner_text(f"{tile(0)} .state") == ""
