"""A tour (轮巡) in Chromium at the city: three pages, each tile shows a picture.

The tour names a camera of the town and the whole village node (东村, four cameras),
one camera a page (five pages); the operator starts it and pages forward by hand (each
page's tile decodes frames); the tour also advances by itself on its dwell time,
pauses, and resumes on the same page after a reload.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_ui_operator import frames
from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")

VILLAGE = "town-a/village-1"
TOUR = {"name": "城关镇夜巡", "items": ["town-a/cam-02", VILLAGE], "layout": 1, "dwell_s": 3}
PAGES = [["town-a/cam-02"], [f"{VILLAGE}/cam-01"], [f"{VILLAGE}/cam-02"]]


@pytest.fixture(scope="module")
def page(ui_system: UiSystem) -> Iterator[Any]:
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        ui_login(p, ui_system.city.base_url)
        yield p
        assert not errors, errors
        p.context.close()


def _page_index(page: Any) -> str | None:
    return page.evaluate("() => document.querySelector('#wall').dataset.tourPage ?? null")


def _shows(page: Any, refs: list[str]) -> bool:
    got = frames(page)
    shown = [r for r, _, _ in got if r]
    return shown == refs and all(n > 0 for r, n, _ in got if r)


def test_a_tour_pages_through_the_wall_and_resumes_after_a_reload(
    page: Any, ui_system: UiSystem
) -> None:
    r = ui_system.city.client.post("/api/v1/tours", json={**TOUR, "dwell_s": 600})
    assert r.status_code == 201, r.text
    tour_id = r.json()["id"]
    page.reload()
    page.wait_for_selector("body[data-ready]", timeout=15_000)
    page.select_option("#tour-pick", str(tour_id))
    page.click("#tour-start")
    # Three pages by hand: every tile of each shows a picture.
    for index, refs in enumerate(PAGES):
        wait_for(lambda i=index: _page_index(page) == str(i), 10, f"tour page {index + 1}")
        wait_for(lambda r=refs: _shows(page, r), 30, f"page {index + 1} playing", every=0.25)
        if index == 1:
            shot(page, "16-tour-page-2")
        if index < len(PAGES) - 1:
            page.click("#tour-next")
    assert "城关镇夜巡 · 3/5" in page.inner_text("#tour-status")

    # Paused on page 3, the tour stays there across a reload.
    page.click("#tour-pause")
    page.reload()
    page.wait_for_selector("body[data-ready]", timeout=15_000)
    wait_for(lambda: _page_index(page) == "2", 10, "the tour resumed on page 3")
    assert "已暂停" in page.inner_text("#tour-status")
    wait_for(lambda: _shows(page, PAGES[2]), 30, "page 3 playing after the reload", every=0.25)
    page.click("#tour-prev")
    wait_for(lambda: _page_index(page) == "1", 10, "back on page 2")
    page.click("#tour-stop")
    assert page.inner_text("#tour-status") == ""


def test_a_tour_advances_by_itself_with_the_next_page_opened_ahead(
    page: Any, ui_system: UiSystem
) -> None:
    three = [PAGES[0][0], PAGES[1][0], PAGES[2][0]]
    body = {**TOUR, "name": "自动翻页", "items": three, "dwell_s": 3}
    r = ui_system.city.client.post("/api/v1/tours", json=body)
    assert r.status_code == 201, r.text
    page.reload()
    page.wait_for_selector("body[data-ready]", timeout=15_000)
    page.select_option("#tour-pick", str(r.json()["id"]))
    page.click("#tour-start")
    # The start, then three switches on the dwell time: pages 2, 3 and round to 1.
    switches = wait_for(
        lambda: (s := page.evaluate("() => window.gw.tours.switches")) and len(s) >= 4 and s,
        40,
        "three automatic switches",
        every=0.25,
    )
    page.click("#tour-stop")
    # Every tile of every page painted a picture (a frame after the switch).
    assert all(len(times) == 1 for times in switches[1:4]), switches
    ms = sorted(times[0] for times in switches[1:4])
    print(f"tour switch → picture: opened ahead {ms} ms; first page, cold: {switches[0]} ms")
    assert page.locator(".tour-stage video").count() == 0  # nothing left open after the stop
