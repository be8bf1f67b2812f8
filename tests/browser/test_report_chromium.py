"""The inspection report page (巡检报告) in Chromium: figures, faulty cameras with their
reasons, the trend, CSV export, and a clean print layout (screenshot in test-artifacts/ui)."""

from __future__ import annotations

import json

import pytest

from tests.browser.ui_system import ARTIFACTS, chromium, new_page, shot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")


def test_report_page_lists_faulty_cameras_and_exports_csv(gateway_factory) -> None:
    gw = gateway_factory(
        {
            "cameras": [
                {"id": "cam-01", "name": "村口", "rtsp_url": "rtsp://127.0.0.1:9/none"},
                {"id": "cam-02", "name": "学校门口", "rtsp_url": "rtsp://127.0.0.1:9/none"},
            ],
            "motion": {"enabled": False},
        }
    )
    r = gw.client.post(
        "/api/v1/events",
        json={
            "camera": "cam-02",
            "type": "diagnosis",
            "data": {
                "kind": "occlusion",
                "reason": "遮挡：66% 的画面被遮挡",
                "reason_en": "occlusion",
            },
        },
    )
    assert r.status_code == 201, r.text
    assert gw.client.post("/api/v1/reports/inspection/run", json={}).status_code == 200

    with chromium() as browser:
        page = new_page(browser)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(gw.token)})")
        page.goto(gw.base_url + "/report.html")
        page.wait_for_selector("body[data-ready] #cameras tbody tr", timeout=20_000)
        rows = page.locator("#cameras tbody tr")
        assert rows.count() == 2
        faulty = page.locator('#cameras tr[data-camera="cam-02"]')
        assert "遮挡" in faulty.inner_text() and "学校门口" in faulty.inner_text()
        assert "摄像机 / Cameras" in page.locator("#cards").inner_text()
        assert page.locator("#trend polyline.trend-online_rate").count() == 1

        with page.expect_download() as info:
            page.click("#csv")
        csv = info.value.path().read_text(encoding="utf-8-sig")
        lines = csv.strip().splitlines()
        assert lines[0].startswith("camera,name,online_percent,recording_percent")
        by_camera = {line.split(",")[0]: line for line in lines[1:]}
        assert set(by_camera) == {"cam-01", "cam-02"}
        assert "occlusion" in by_camera["cam-02"] and "遮挡" in by_camera["cam-02"]

        shot(page, "inspection-report")
        page.emulate_media(media="print")
        assert page.locator("#run").is_hidden()  # buttons do not print
        pdf = page.pdf(format="A4")
        assert pdf[:4] == b"%PDF"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "inspection-report.pdf").write_bytes(pdf)
        assert not errors, errors
        page.context.close()
