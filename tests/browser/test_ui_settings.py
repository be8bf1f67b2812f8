"""The settings pages (设置) in Chromium at the town, against its real API.

Cameras: discover the town sim's spare camera, add it with credentials, rename one,
remove one; motion zones and masks drawn on a snapshot and saved (PATCH); recording
policy; a child platform's token shown once, then revoked; users added and removed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def page(ui_system: UiSystem) -> Iterator[Any]:
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.on("dialog", lambda d: d.accept())  # the "remove it?" confirmations
        ui_login(p, ui_system.town.base_url)
        p.click('.tab[data-view="settings"]')
        yield p
        assert not errors, errors
        p.context.close()


def section(page: Any, name: str) -> None:
    page.click(f'.settings-nav button[data-section="{name}"]')
    # data-shown is set when the section's content is drawn; before that the body may
    # still hold the section an earlier test left open.
    page.wait_for_selector(f'#view-settings .settings-body[data-shown="{name}"] > *')


def saved(page: Any) -> None:
    page.wait_for_function(
        "() => { const n = document.querySelector('.settings-nav .notice');"
        " return n && n.textContent.length > 0; }"
    )
    note = page.inner_text(".settings-nav .notice")
    assert note == "已保存", note


def test_cameras_discover_add_rename_remove(page: Any, ui_system: UiSystem) -> None:
    town = ui_system.town.client
    section(page, "settings_cameras")
    ids = page.eval_on_selector_all(
        "table.cameras tr[data-camera]", "rs => rs.map((r) => r.dataset.camera)"
    )
    assert ids == ["cam-01", "cam-02"], ids

    spare = ui_system.spare_camera
    page.fill(".disc-ranges", f"{spare['address']}/32")
    page.click("button.discover")
    row = page.locator(f'.disc-results tr[data-endpoint="{spare["endpoint"]}"]')
    deadline = time.monotonic() + 30
    while not row.count() and time.monotonic() < deadline:
        if "失败" in page.inner_text(".settings-nav .notice"):
            break
        time.sleep(0.3)
    if not row.count():
        shot(page, "12-settings-discovery-failed")
        status = town.get("/api/v1/discovery").json()
        raise AssertionError(
            f"spare camera {spare['address']} not discovered: page says "
            f"{page.inner_text('.settings-nav .notice')!r} / {page.inner_text('.disc-results')!r}; "
            f"API: {status}"
        )
    row.locator("button.use").click()
    assert page.input_value(".cam-host") == f"{spare['address']}:{spare['http_port']}"
    page.fill(".cam-name", "镇卫生院")
    page.fill(".cam-location", "城关镇卫生院门口")
    page.fill(".cam-user", spare["username"])
    page.fill(".cam-pass", spare["password"])
    page.click("button.add")
    saved(page)
    cams = {c["name"]: c for c in town.get("/api/v1/cameras").json()}
    assert "镇卫生院" in cams, list(cams)
    new = cams["镇卫生院"]
    assert new["onvif"]["host"] == spare["address"] and new["status"] == "online", new
    assert new["location"] == "城关镇卫生院门口"
    shot(page, "12-settings-cameras")

    # Rename it in the table, then remove it.
    row = page.locator(f'table.cameras tr[data-camera="{new["id"]}"]')
    row.locator("input").first.fill("镇卫生院东门")
    row.locator("button.save").click()
    saved(page)
    assert town.get(f"/api/v1/cameras/{new['id']}").json()["name"] == "镇卫生院东门"
    row.locator("button.remove").click()
    page.wait_for_selector(f'table.cameras tr[data-camera="{new["id"]}"]', state="detached")
    assert town.get(f"/api/v1/cameras/{new['id']}").status_code == 404


def test_motion_zone_and_mask_drawn_on_the_snapshot_are_saved(
    page: Any, ui_system: UiSystem
) -> None:
    section(page, "settings_motion")
    page.select_option(".motion-camera", "cam-02")
    page.wait_for_function(
        "() => { const i = document.querySelector('.zone-editor img');"
        " return i && i.naturalWidth > 0; }",
        timeout=20_000,
    )
    canvas = page.locator(".zone-editor canvas")
    box = canvas.bounding_box()

    def at(x: float, y: float) -> dict[str, float]:
        return {"x": x * box["width"], "y": y * box["height"]}

    page.click("button.draw-zone")
    for x, y in [(0.2, 0.3), (0.7, 0.3), (0.7, 0.8)]:
        canvas.click(position=at(x, y))
    canvas.dblclick(position=at(0.2, 0.8))
    page.click("button.draw-mask")
    for x, y in [(0.01, 0.01), (0.99, 0.01), (0.99, 0.1)]:
        canvas.click(position=at(x, y))
    canvas.dblclick(position=at(0.01, 0.1))
    editor = page.locator(".settings-body > div:last-child")
    assert editor.get_attribute("data-zones") == "1" and editor.get_attribute("data-masks") == "1"
    shot(page, "13-settings-motion")
    page.click(".settings-body button.save")
    saved(page)
    motion = ui_system.town.client.get("/api/v1/cameras/cam-02").json()["motion"]
    assert list(motion["zones"]) == ["区域1"], motion
    zone = motion["zones"]["区域1"]
    # Three clicks and the double-click's point; the double-click adds no extra points.
    assert len(zone) == 4, zone
    assert zone[0] == pytest.approx([0.2, 0.3], abs=0.01)
    assert zone[2] == pytest.approx([0.7, 0.8], abs=0.01)
    assert len(motion["masks"]) == 1 and len(motion["masks"][0]) == 4
    # The fields the editor does not show keep their values.
    assert motion["fps"] == 5.0 and motion["enabled"] is False


def test_recording_policy_is_saved(page: Any, ui_system: UiSystem) -> None:
    section(page, "settings_recording")
    row = page.locator('table.recording tr[data-camera="cam-02"]')
    row.locator("select.rec-mode").select_option("events")
    row.locator("input").nth(0).fill("4")
    row.locator("button.save").click()
    saved(page)
    rec = ui_system.town.client.get("/api/v1/cameras/cam-02").json()["recording"]
    assert rec["mode"] == "events" and rec["segment_s"] == 4, rec
    row.locator("select.rec-mode").select_option("off")
    row.locator("button.save").click()
    saved(page)
    assert ui_system.town.client.get("/api/v1/cameras/cam-02").json()["recording"]["mode"] == "off"


def test_child_token_shown_once_then_revoked(page: Any, ui_system: UiSystem) -> None:
    section(page, "settings_children")
    village = page.locator('table.children tr[data-child="village-1"]')
    assert village.locator("td").nth(1).inner_text() == "在线"
    page.fill(".child-name", "village-9")
    page.click(".settings-body button.add")
    page.wait_for_selector("pre.token:not([hidden])")
    text = page.inner_text("pre.token")
    assert text.startswith("令牌只显示一次")
    token = text.split("\n", 1)[1].strip()
    assert len(token) >= 20
    shot(page, "14-settings-children")
    listed = {c["name"]: c for c in ui_system.town.client.get("/api/v1/children").json()}
    assert listed["village-9"]["revoked"] in (None, False, 0) and token not in str(listed)
    page.locator('table.children tr[data-child="village-9"] button.revoke').click()
    page.wait_for_function(
        "() => { const r = document.querySelector('table.children tr[data-child=\"village-9\"]');"
        " return r && !r.querySelector('button.revoke'); }"
    )
    listed = {c["name"]: c for c in ui_system.town.client.get("/api/v1/children").json()}
    assert listed["village-9"]["revoked"]


def test_users_added_and_removed(page: Any, ui_system: UiSystem) -> None:
    section(page, "settings_users")
    page.fill(".user-name", "zhang-san")
    page.fill(".user-pass", "zhang-san-pw")
    page.select_option(".user-role", "operator")
    page.fill(".user-scope", "village-1")
    page.click(".settings-body button.add")
    row = page.locator('table.users tr[data-user="zhang-san"]')
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "操作员"
    users = {u["username"]: u for u in ui_system.town.client.get("/api/v1/auth/users").json()}
    assert users["zhang-san"]["role"] == "operator" and users["zhang-san"]["scope"] == "village-1"
    shot(page, "15-settings-users")
    row.locator("button.remove").click()
    row.wait_for(state="detached")
    users = {u["username"] for u in ui_system.town.client.get("/api/v1/auth/users").json()}
    assert "zhang-san" not in users

    # A short password is refused with the API's reason, in the page.
    page.fill(".user-name", "li-si")
    page.fill(".user-pass", "short")
    page.click(".settings-body button.add")
    wait_for(lambda: "失败" in page.inner_text(".settings-nav .notice"), 5, "the refusal")
    assert "password" in page.inner_text(".settings-nav .notice")  # names the field
