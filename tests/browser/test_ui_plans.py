"""A plan (预案) launched by hand in Chromium at the city, with confirmation.

The plan puts two cameras of two places on the wall and sends the town's ONVIF PTZ
camera (two hops below the page's gateway's tree: town-a/cam-01) to its home preset.
Cancelling the confirmation launches nothing; accepting it moves the camera (read
back over ONVIF from the simulator), fills the wall, shows the plan's message, and
the launch is in the audit log under the operator's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.test_ui_features import ptz_status
from tests.browser.test_ui_operator import frames
from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for
from tests.test_plans_api import _absolute, _ptz

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")

PTZ_CAM = "town-a/cam-01"
GROUP = [PTZ_CAM, "town-a/village-1/cam-03"]
PLAN = {
    "name": "镇政府警情",
    "wall": GROUP,
    "presets": [{"camera": PTZ_CAM, "preset": "preset_1"}],
    "message": "镇政府门口警情，请值班员核实",
}


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


def _launches(ui_system: UiSystem) -> list[dict[str, Any]]:
    r = ui_system.city.client.get("/api/v1/audit", params={"action": "plan_launch"})
    return [e for e in r.json()["entries"] if e["detail"]["plan"] == PLAN["name"]]


def test_a_plan_launched_from_the_wall_after_confirmation(page: Any, ui_system: UiSystem) -> None:
    r = ui_system.city.client.post("/api/v1/plans", json=PLAN)
    assert r.status_code == 201, r.text
    cam = ui_system.town_sim.cameras[0]
    _ptz(cam, _absolute(0.5, 0.2))
    wait_for(lambda: abs(ptz_status(cam)[0] - 0.5) < 0.01, 10, "the camera away from home")

    page.reload()
    page.wait_for_selector("body[data-ready] #plan-launch:not([hidden])", timeout=15_000)
    page.select_option("#plan-pick", label=PLAN["name"])

    page.once("dialog", lambda d: d.dismiss())
    page.click("#plan-launch")
    page.wait_for_timeout(500)
    assert _launches(ui_system) == []  # cancelled: nothing launched

    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#plan-launch")
    assert asked and PLAN["name"] in asked[0]
    wait_for(lambda: abs(ptz_status(cam)[0]) < 0.01, 15, "the camera at its home preset")
    wait_for(
        lambda: [r for r, _, _ in frames(page)][:2] == GROUP, 15, "the plan's group on the wall"
    )
    page.wait_for_function(
        "(m) => document.querySelector('#wall-notice').textContent.includes(m)",
        arg=PLAN["message"],
        timeout=10_000,
    )
    row = page.locator("#alarm-list li.plan").first
    row.wait_for(timeout=10_000)
    assert PLAN["name"] in row.inner_text()
    shot(page, "14-plan-launched")
    launches = wait_for(lambda: _launches(ui_system), 10, "the launch in the audit log")
    assert launches[0]["user"] == "admin" and launches[0]["ok"] is True


def test_the_audit_log_page_searches_by_action(page: Any) -> None:
    # The page's own login (the fixture's) is always there to find.
    page.click('.tab[data-view="settings"]')
    page.click('.settings-nav button[data-section="settings_audit"]')
    page.wait_for_selector("table.audit tr[data-action]", timeout=10_000)
    page.select_option(".audit-action", "login")
    page.click(".audit-search")
    page.wait_for_function(
        """() => {
          const rows = [...document.querySelectorAll("table.audit tr[data-action]")];
          return rows.length > 0 && rows.every((r) => r.dataset.action === "login");
        }""",
        timeout=10_000,
    )
    row = page.locator("table.audit tr[data-action]").first
    assert row.get_attribute("data-user") == "admin"
    assert "登录" in row.inner_text()
    href = page.get_attribute(".audit-csv", "href") or ""
    assert href.startswith("/api/v1/audit/export.csv?") and "action=login" in href
    shot(page, "15-audit-log")
    page.click('.tab[data-view="live"]')
