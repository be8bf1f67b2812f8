"""The report page asks for an on-demand inspection (按需巡检) of the whole tree in
Chromium, and shows which nodes' fresh rows have arrived and which child has not
answered (offline, delivers on return). Screenshot in test-artifacts/ui."""

from __future__ import annotations

import json

import pytest

from tests.browser.ui_system import chromium, new_page, shot
from tests.cascade_support import issue_token_api, start_levels, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")


def test_report_page_runs_a_tree_inspection_and_shows_who_answered(gateway_factory) -> None:
    camera = {"id": "cam-01", "name": "村口", "rtsp_url": "rtsp://127.0.0.1:9/none"}
    lv = start_levels(
        gateway_factory, village_extra={"cameras": [camera], "motion": {"enabled": False}}
    )
    city = lv.city
    issue_token_api(city, "town-b")  # a town that never connects: offline in the tree

    def children() -> dict[str, bool]:
        return {
            c["name"]: c["online"] for c in city.client.get("/api/v1/cascade").json()["children"]
        }

    wait_for(lambda: children() == {"town-a": True, "town-b": False}, 20, "town-a up, town-b known")

    with chromium() as browser:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(city.token)})")
        page.goto(city.base_url + "/report.html")
        page.wait_for_selector("body[data-ready]", timeout=20_000)
        assert page.locator("#runbox").is_hidden()
        # at first the latest report is yesterday's (made at start): inspect now means today
        page.wait_for_function("document.getElementById('date').value !== ''")
        page.click("#run")
        page.wait_for_selector(
            '#runnodes tr[data-node="town-a/village-1"][data-state="arrived"]', timeout=30_000
        )
        page.wait_for_selector('#runnodes tr[data-node="town-a"][data-state="arrived"]')
        offline = page.locator('#runnodes tr[data-node="town-b"]')
        assert offline.get_attribute("data-state") == "offline"
        assert "上线后补报" in offline.inner_text()
        assert page.locator("#runbox").get_attribute("data-complete") == "0"
        assert "未到 / not yet 1" in page.locator("#runsummary").inner_text()
        # the fresh village rows are in the city's report, reloaded as they arrived
        page.wait_for_selector('#cameras tr[data-camera="town-a/village-1/cam-01"]', timeout=20_000)
        today = city.client.get("/api/v1/reports/inspection").json()["day"]
        assert page.locator("#date").input_value() == today
        assert today in page.locator("#title").inner_text()
        shot(page, "inspection-run")
        runs = city.client.get("/api/v1/reports/inspection/runs").json()
        assert len(runs) == 1 and runs[0]["id"] == page.locator("#runbox").get_attribute("data-run")
        assert runs[0]["day"] is None  # today so far, not the day shown before
        # the week (7 days to the date) of the same tree
        page.select_option("#period", "week")
        page.wait_for_function(
            "document.getElementById('title').textContent.includes('周报 / week')"
        )
        page.wait_for_selector('#cameras tr[data-camera="town-a/village-1/cam-01"]')
        assert page.locator('#children tr[data-node="town-a/village-1"]').count() == 1
        shot(page, "inspection-week")
        # camera names come from below: one that looks like a formula stays text in the CSV
        row = {"camera": "c", "name": "=HYPERLINK(1)", "online_percent": 1, "recording": None,
               "faults": [], "diagnosis": []}  # fmt: skip
        csv = page.evaluate("r => window.gwReport.csvText({tree: {rows: [r]}})", row)
        assert csv.splitlines()[1].startswith("c,'=HYPERLINK(1),1,")
        page.emulate_media(media="print")
        assert page.locator("#runbox").is_hidden()  # the run box does not print
        assert not errors, errors
        page.context.close()
