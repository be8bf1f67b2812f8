"""The tour editor (轮巡编辑) on the wall, in Chromium at the city: clear errors (no name,
no camera, an item not in the tree, a name taken), a shared tour with a node and a camera
in order, edited and deleted; zh-CN and English. Screenshots in test-artifacts/ui."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

VILLAGE = "town-a/village-1"
CAMERA = "town-a/cam-02"
NAME = "东村夜巡（编辑器）"


def _tour(ui_system: UiSystem, name: str) -> dict[str, Any] | None:
    tours = ui_system.city.client.get("/api/v1/tours").json()
    return next((x for x in tours if x["name"] == name), None)


def _says(page: Any, text: str) -> None:
    """The editor's error line says ``text`` (API answers come a moment later)."""
    expect(page.locator("#te-error")).to_contain_text(text, timeout=15_000)


def _add(page: Any, item: str) -> None:
    page.fill("#te-item", item)
    page.click("#te-add")


def test_an_operator_creates_edits_and_deletes_a_tour_on_the_wall(ui_system: UiSystem) -> None:
    taken = ui_system.city.client.post(
        "/api/v1/tours", json={"name": "已有轮巡", "items": [CAMERA], "layout": 1, "dwell_s": 10}
    )
    assert taken.status_code == 201, taken.text
    with chromium() as browser:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: d.accept())  # the delete confirmation
        ui_login(page, ui_system.city.base_url)
        page.wait_for_selector("body[data-ready]", timeout=20_000)

        page.click("#tour-new")
        dialog = page.locator("#tour-editor")
        assert dialog.is_visible() and "新建轮巡" in page.locator("#te-title").inner_text()
        page.click("#te-save")
        _says(page, "请填写轮巡名称")
        page.fill("#te-name", NAME)
        page.click("#te-save")
        _says(page, "轮巡至少需要一台摄像机或一个节点")  # a tour with 0 cameras
        _add(page, "town-a/nowhere")
        _says(page, "不是设备树上的摄像机或节点")
        assert page.locator("#te-items li").count() == 0
        _add(page, CAMERA)
        _add(page, VILLAGE)
        page.click(f'#te-items li[data-item="{VILLAGE}"] .te-up')  # the village first
        order = page.eval_on_selector_all("#te-items li", "els => els.map(e => e.dataset.item)")
        assert order == [VILLAGE, CAMERA]
        assert "东村" in page.locator("#te-items li").first.inner_text()
        page.select_option("#te-layout", "4")
        page.fill("#te-dwell", "2")
        page.click("#te-save")
        _says(page, "停留时间须在 3-3600 秒之间")
        page.fill("#te-dwell", "20")
        page.fill("#te-name", "已有轮巡")  # the admin's own personal tour of that name
        page.click("#te-save")
        _says(page, "轮巡名称已存在")  # the API's refusal, in words
        page.fill("#te-name", NAME)
        page.check("#te-shared")  # the admin may share it
        shot(page, "tour-editor")
        page.click("#te-save")
        dialog.wait_for(state="hidden")
        tour = _tour(ui_system, NAME)
        assert tour is not None
        assert (tour["items"], tour["layout"], tour["dwell_s"], tour["shared"]) == (
            [VILLAGE, CAMERA],
            4,
            20,
            True,
        )
        assert page.locator("#tour-pick").input_value() == str(tour["id"])
        assert page.locator("#tour-status").inner_text() == "轮巡已保存"

        # edit: drop the camera, a longer dwell, not shared
        page.click("#tour-edit")
        assert page.locator("#te-name").input_value() == NAME
        assert page.locator("#te-dwell").input_value() == "20"
        page.click(f'#te-items li[data-item="{CAMERA}"] .te-remove')
        page.fill("#te-dwell", "30")
        page.uncheck("#te-shared")
        page.click("#te-save")
        dialog.wait_for(state="hidden")
        tour = _tour(ui_system, NAME)
        assert tour is not None and tour["items"] == [VILLAGE] and tour["dwell_s"] == 30
        assert not tour["shared"]

        # English
        page.click("#lang-toggle")
        page.click("#tour-edit")
        assert page.locator("#te-title").inner_text() == "Edit tour"
        assert "Seconds per page" in dialog.inner_text()
        page.fill("#te-name", "")
        page.click("#te-save")
        _says(page, "Enter the tour's name")
        page.fill("#te-name", NAME)
        shot(page, "tour-editor-en")

        # delete (after the confirmation)
        page.click("#te-delete")
        dialog.wait_for(state="hidden")
        assert _tour(ui_system, NAME) is None
        options = page.eval_on_selector_all("#tour-pick option", "els => els.map(e => e.value)")
        assert str(tour["id"]) not in options
        assert page.locator("#tour-status").inner_text() == "Tour deleted"
        page.click("#lang-toggle")  # back to zh-CN for the other tests' pages
        assert not errors, errors
        page.context.close()
    ui_system.city.client.delete(f"/api/v1/tours/{taken.json()['id']}")
