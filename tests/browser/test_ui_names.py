"""Names an operator can tell apart, in Chromium at the city (issue 13, item 6).

Cameras below a child are shown with their place ("东村 · 小学门口") on the wall's tiles
and in alarm rows; a motion alarm row shows the intensity with a decimal while it is
small, and switches to the event's peak when the event ends (the same event id
published again with its end).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")

SCHOOL = "town-a/village-1/cam-02"  # 小学门口 in 东村


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


def test_tile_and_alarm_row_name_the_place_and_the_peak(page: Any, ui_system: UiSystem) -> None:
    page.click('.layout-btn[data-layout="4"]')
    page.drag_and_drop(f'.tree-cam[data-camera="{SCHOOL}"]', '.tile[data-index="0"]')
    name = page.locator('.tile[data-index="0"] .name')
    name.wait_for(timeout=10_000)
    assert name.inner_text() == "东村 · 小学门口"

    event_id = f"names-{os.getpid()}-{datetime.now(UTC).timestamp():.0f}"
    body = {"id": event_id, "camera": SCHOOL, "type": "motion", "score": 0.004}
    r = ui_system.city.client.post("/api/v1/events", json=body)
    assert r.status_code == 201, r.text
    row = page.locator(f'#alarm-list li[data-id="{event_id}"]')
    row.wait_for(timeout=10_000)
    assert row.locator(".cam").inner_text() == "东村 · 小学门口"
    assert row.locator(".detail").inner_text() == "强度 0.4%"

    # The event ends with a higher peak: the same row now says so.
    end = {**body, "score": 0.153, "end": datetime.now(UTC).isoformat()}
    r = ui_system.city.client.post("/api/v1/events", json=end)
    assert r.status_code == 201, r.text
    page.wait_for_function(
        """(id) => {
          const d = document.querySelector(`#alarm-list li[data-id="${id}"] .detail`);
          return d && d.textContent === "峰值强度 15%";
        }""",
        arg=event_id,
        timeout=10_000,
    )
    assert page.locator(f'#alarm-list li[data-id="{event_id}"]').count() == 1
    shot(page, "13-names-and-peak")
