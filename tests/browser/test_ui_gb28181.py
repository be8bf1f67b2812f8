"""The 上级平台 (upper platforms) settings page in Chromium, against a gateway registered to
SIPp (digest checked by SIPp): the live state, last keepalive and clock offset from the
platform's Date; a platform added with a wrong password shows offline with the 403 as its
last error; editing in the right password (the field is write-only and empty by default)
brings it online; deleting removes it. Screenshots in zh-CN and English."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.ui_system import chromium, new_page, shot, ui_login
from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, Sipp
from tests.support import GatewayProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

PASSWORD = "ui-Secret-77"
WRONG = "not-the-password"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Sipp]]:
    tmp = tmp_path_factory.mktemp("gb-ui")
    registrar = Sipp(
        "gb_platform_uas.xml", tmp, "-key", "user", DEVICE_ID, "-key", "pass", PASSWORD
    )
    gw: GatewayProcess | None = None
    try:
        config = {
            "cameras": [
                {"id": "cam-01", "name": "镇政府大门", "rtsp_url": f"rtsp://{HOST}:9/none"}
            ],
            "gb28181": {
                "sip_t1_s": 0.1,
                "upstream": [_platform("county", registrar.port, PASSWORD, keepalive_s=1)],
            },
        }
        gw = GatewayProcess(tmp, config, name="gw-gb-ui")
        yield gw, registrar
    finally:
        if gw is not None:
            gw.stop()
            assert PASSWORD not in gw.tail(10**7) and WRONG not in gw.tail(10**7)
        registrar.stop()


def _platform(uid: str, port: int, password: str, **over: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "server_id": SERVER_ID,
        "domain": DOMAIN,
        "host": HOST,
        "port": port,
        "device_id": DEVICE_ID,
        "password": password,
        "local_host": HOST,
        "civil_code": "340200",
        **over,
    }


@pytest.fixture(scope="module")
def page(system: tuple[GatewayProcess, Sipp]) -> Iterator[Any]:
    gw, _ = system
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        p.on("dialog", lambda d: d.accept())
        ui_login(p, gw.base_url)
        p.click('.tab[data-view="settings"]')
        yield p
        assert not errors, errors
        p.context.close()


def _open(page: Any) -> None:
    page.click('.settings-nav button[data-section="settings_gb28181"]')
    page.wait_for_selector("table.gb-upstream tr[data-upstream]")


def _row_state(page: Any, uid: str, state: str) -> Any:
    row = page.locator(f'table.gb-upstream tr[data-upstream="{uid}"]')
    page.wait_for_selector(
        f'table.gb-upstream tr[data-upstream="{uid}"] td.gb-state[data-state="{state}"]',
        timeout=30_000,
    )
    return row


def test_the_registered_platform_shows_online_with_keepalive_and_clock_offset(
    page: Any, system: tuple[GatewayProcess, Sipp]
) -> None:
    gw, _ = system
    _open(page)
    row = _row_state(page, "county", "online")
    page.wait_for_function(
        "() => document.querySelector('tr[data-upstream=county] td.gb-keepalive')"
        ".textContent.length > 0",
        timeout=30_000,
    )
    assert row.locator("td.gb-state").inner_text() == "在线"
    # SIPp's 200 OK says 1 Dec 2026 08:00 GMT: the offset is shown, not applied.
    status = gw.client.get("/api/v1/gb28181/upstream/county").json()["status"]
    offset = status["clock_offset_s"]
    assert offset is not None and offset < -60, status
    assert row.locator("td.gb-clock").inner_text().startswith(f"{offset:.1f} s")
    assert "平台慢" in row.locator("td.gb-clock").inner_text()
    assert row.locator("td.gb-channels").inner_text() == str(status["channels_pushed"])
    assert row.locator("td.gb-streams").inner_text() == "0"
    assert "34020000002000000001" in row.inner_text() and "UDP" in row.inner_text()
    assert PASSWORD not in page.content()
    shot(page, "40-settings-gb28181-zh")


def test_add_with_a_wrong_password_edit_it_right_then_delete(
    page: Any, system: tuple[GatewayProcess, Sipp], tmp_path: Path
) -> None:
    gw, _ = system
    # A registrar of its own: SIPp's verdict on a digest is global to its scenario. It forgets
    # ended calls at once, so each retry (same Call-ID, as RFC 3261 asks) is refused again.
    registrar = Sipp(
        "gb_platform_uas.xml", tmp_path, "-key", "user", DEVICE_ID, "-key", "pass", PASSWORD,
        "-deadcall_wait", "1",
    )  # fmt: skip
    try:
        _add_edit_delete(page, gw, registrar)
    finally:
        registrar.stop()


def _add_edit_delete(page: Any, gw: GatewayProcess, registrar: Sipp) -> None:
    _open(page)
    form = page.locator("form.gb-form")
    values = _platform("city2", registrar.port, WRONG, keepalive_s=2)
    for key in ("id", "server_id", "domain", "host", "port", "device_id", "civil_code"):
        form.locator(f'[name="{key}"]').fill(str(values[key]))
    form.locator('[name="keepalive_s"]').fill("2")
    form.locator('[name="password"]').fill(WRONG)
    form.locator("button.gb-submit").click()
    page.wait_for_function(
        "() => { const td = document.querySelector('tr[data-upstream=city2] td.gb-error');"
        " return td && td.textContent.includes('403'); }",
        timeout=30_000,
    )
    row = page.locator('table.gb-upstream tr[data-upstream="city2"]')
    assert row.locator("td.gb-state").get_attribute("data-state") in ("offline", "registering")
    assert "check the password" in row.locator("td.gb-error").inner_text()
    added = gw.client.get("/api/v1/gb28181/upstream/city2").json()
    assert added["password_set"] is True and "password" not in added
    assert added["local_host"] == "0.0.0.0"  # what the form does not set keeps its default
    shot(page, "41-settings-gb28181-wrong-password-zh")

    # Edit: the password field starts empty (write-only); typing the right one fixes it.
    row.locator("button.gb-edit-btn").click()
    pw = form.locator('[name="password"]')
    assert pw.input_value() == "" and pw.get_attribute("placeholder") == "已设置（留空不修改）"
    assert form.locator('[name="id"]').is_disabled()
    pw.fill(PASSWORD)
    form.locator("button.gb-submit").click()
    _row_state(page, "city2", "online")
    assert PASSWORD not in page.content()

    # Edit again without touching the password: it is kept.
    page.locator('tr[data-upstream="city2"] button.gb-edit-btn').click()
    form.locator('[name="keepalive_s"]').fill("3")
    form.locator("button.gb-submit").click()
    page.wait_for_function(
        "() => !document.querySelector('form.gb-form [name=id]').disabled", timeout=10_000
    )
    changed = gw.client.get("/api/v1/gb28181/upstream/city2").json()
    assert changed["keepalive_s"] == 3 and changed["password_set"] is True
    _row_state(page, "city2", "online")  # registered again with the kept password

    page.locator('tr[data-upstream="city2"] button.remove').click()
    page.wait_for_selector('tr[data-upstream="city2"]', state="detached")
    assert gw.client.get("/api/v1/gb28181/upstream/city2").status_code == 404


def test_the_page_in_english(page: Any) -> None:
    page.click("#lang-toggle")
    page.wait_for_selector('.tab[data-view="settings"]:has-text("Settings")')
    _open(page)
    _row_state(page, "county", "online")
    assert page.inner_text('.settings-nav button[data-section="settings_gb28181"]') == (
        "Upper platforms"
    )
    head = page.inner_text("table.gb-upstream tr:first-child")
    for label in ("Platform ID", "State", "Last keepalive", "Clock offset", "Channels pushed"):
        assert label in head, head
    assert page.inner_text('tr[data-upstream="county"] td.gb-state') == "Online"
    assert "platform behind" in page.inner_text('tr[data-upstream="county"] td.gb-clock')
    shot(page, "42-settings-gb28181-en")
    page.click("#lang-toggle")  # back to zh-CN for whoever shares the browser profile
