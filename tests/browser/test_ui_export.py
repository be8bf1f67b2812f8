"""Evidence export (录像导出) in Chromium at the city: choose cameras of two levels and a span,
follow the job to 100 %, download the ZIP, check its SHA-256 and signature; bad input is shown.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for
from tests.export_support import verify_cli, zip_members

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")

VILLAGE_CAM = "town-a/village-1/cam-01"  # records on events (ui_system)
TOWN_CAM = "town-a/cam-02"  # records nothing: its part of the export is "nothing recorded"


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _recorded_span(ui_system: UiSystem) -> tuple[float, float]:
    """Make the village camera record (an alarm: pre- and post-roll) and wait for the footage."""
    t = time.time()
    r = ui_system.village.client.post("/api/v1/events", json={"camera": "cam-01", "type": "alarm"})
    assert r.status_code == 201, r.text

    def covered() -> bool:
        segs = ui_system.city.client.get(
            f"/api/v1/tree/recordings/{VILLAGE_CAM}",
            params={"start": datetime.fromtimestamp(t - 10, UTC).isoformat()},
        ).json()["recordings"]
        return any(not s["recording"] and _ts(s["end"]) >= t + 2 for s in segs)

    wait_for(covered, 30, "the alarm's footage at the city", every=0.3)
    return t - 1, t + 2


def _set_span(page: Any, start: float, end: float) -> None:
    page.evaluate(
        """([a, b]) => {
          const p = (n) => String(n).padStart(2, "0");
          const f = (ms) => {
            const d = new Date(ms);
            return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`
              + `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
          };
          document.getElementById("export-start").value = f(a);
          document.getElementById("export-end").value = f(b);
        }""",
        [start * 1000, end * 1000],
    )


def _export_ids(ui_system: UiSystem) -> set[str]:
    return {j["id"] for j in ui_system.city.client.get("/api/v1/exports").json()["exports"]}


def _open(page: Any, base_url: str) -> None:
    ui_login(page, base_url)
    page.goto(base_url + "/export.html")
    page.wait_for_selector("body[data-ready] #export-cams label", timeout=15_000)


def test_an_export_of_two_levels_runs_downloads_and_verifies_in_the_page(
    ui_system: UiSystem, tmp_path: Path
) -> None:
    start, end = _recorded_span(ui_system)
    with chromium() as browser:
        page = new_page(browser, "zh-CN")
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _open(page, ui_system.city.base_url)
        assert page.inner_text("h1") == "录像导出"
        fingerprint = ui_system.city.client.get("/api/v1/exports/key").json()["fingerprint"]
        assert page.inner_text("#export-key") == fingerprint
        before = _export_ids(ui_system)
        for path in (VILLAGE_CAM, TOWN_CAM):
            page.check(f'#export-cams label[data-path="{path}"] input')

        # Bad input: a 30-day span is refused with a clear message, and nothing is created.
        _set_span(page, end - 30 * 86400, end)
        page.click("#export-submit")
        wait_for(lambda: "导出时段过长" in page.inner_text("#export-error"), 10, "the span error")
        assert _export_ids(ui_system) == before
        shot(page, "40-export-error-zh")

        _set_span(page, start, end)
        page.fill("#export-title", "派出所调取 2026-117")
        page.click("#export-submit")
        row = page.locator("#export-jobs tr[data-id]").first
        wait_for(
            lambda: row.get_attribute("data-state") == "done", 60, "the export done", every=0.3
        )
        assert "100%" in row.inner_text()
        assert "完成" in row.locator(".export-state").inner_text()
        village = row.locator(f'.cam-result[data-path="{VILLAGE_CAM}"]')
        assert village.get_attribute("data-state") == "done"
        assert "东村" in village.inner_text()
        town = row.locator(f'.cam-result[data-path="{TOWN_CAM}"]')
        assert town.get_attribute("data-state") == "empty" and "无录像" in town.inner_text()
        shot(page, "41-export-done-zh")

        with page.expect_download(timeout=30_000) as info:
            row.locator("a.export-download").click()
        saved = tmp_path / "export.zip"
        info.value.save_as(saved)
        export_id = row.get_attribute("data-id")
        job = ui_system.city.client.get(f"/api/v1/exports/{export_id}").json()
        data = saved.read_bytes()
        assert hashlib.sha256(data).hexdigest() == job["sha256"]
        members = zip_members(data)
        manifest = json.loads(members["manifest.json"])
        assert manifest["title"] == "派出所调取 2026-117"
        for entry in manifest["files"]:
            assert hashlib.sha256(members[entry["name"]]).hexdigest() == entry["sha256"]
        assert any(f["name"].startswith(f"clips/{VILLAGE_CAM}/") for f in manifest["files"])
        ok = verify_cli(saved, "--key", fingerprint)
        assert ok.returncode == 0, ok.stdout + ok.stderr

        # The same page in English.
        en = new_page(browser, "en")
        en.on("pageerror", lambda e: errors.append(str(e)))
        _open(en, ui_system.city.base_url)
        assert en.inner_text("h1") == "Evidence export"
        en_row = en.locator(f'#export-jobs tr[data-id="{export_id}"]')
        assert "done" in en_row.locator(".export-state").inner_text()
        assert "nothing recorded" in en_row.inner_text()
        shot(en, "42-export-done-en")
        _set_span(en, end - 30 * 86400, end)
        en.check(f'#export-cams label[data-path="{VILLAGE_CAM}"] input')
        en.click("#export-submit")
        wait_for(lambda: "max_span_hours" in en.inner_text("#export-error"), 10, "the span error")
        shot(en, "43-export-error-en")

        # Deleting it from the page removes it.
        page.on("dialog", lambda d: d.accept())
        row.locator("button.export-delete").click()
        wait_for(lambda: page.locator(f'tr[data-id="{export_id}"]').count() == 0, 10, "deleted")
        assert ui_system.city.client.get(f"/api/v1/exports/{export_id}").status_code == 404
        assert not errors, errors
        page.context.close()
        en.context.close()
