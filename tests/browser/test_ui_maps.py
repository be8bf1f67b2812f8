"""The e-map (电子地图) in Chromium, on the town of the ``ui_system`` (city ← town ← village).

An operator at the town uploads the town's map through the page, drags a town camera
and the village (东村) from the device tree onto it and saves; the village's own map
(kept by the village gateway) opens from its area through the cascade; an alarm on a
village camera flashes its pin (and the village's area on the town map); clicking a pin
plays the camera in a popup, and sends it to a wall tile. A file that is not an image
and one over 20 MB get clear errors in the page. Screenshots in zh-CN and English.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
pytest.importorskip("playwright.sync_api")

TOWN_CAM = "cam-02"  # 镇中心街, on the town's own map
VILLAGE = "village-1"
VILLAGE_CAM = "cam-02"  # 小学门口, on the village's map
TOWN_SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1200 700" width="1200" height="700">
  <rect width="1200" height="700" fill="#f3efe4"/>
  <path d="M0 520 C300 470 500 600 1200 540" stroke="#8fc1e8" stroke-width="38" fill="none"/>
  <path d="M80 0 L160 700 M0 250 L1200 210 M640 0 L700 700" stroke="#ffffff" stroke-width="22"/>
  <path d="M80 0 L160 700 M0 250 L1200 210 M640 0 L700 700" stroke="#d9c9a3" stroke-width="2"/>
  <rect x="560" y="120" width="160" height="90" fill="#e8d8d0" stroke="#b89"/>
  <text x="575" y="170" font-size="26" fill="#654">城关镇政府</text>
  <text x="900" y="620" font-size="24" fill="#4a7fa8">青溪河</text>
</svg>
"""


def village_png() -> bytes:
    img = np.full((500, 800, 3), (228, 238, 232), np.uint8)
    cv2.line(img, (0, 260), (800, 230), (255, 255, 255), 26)
    cv2.line(img, (420, 0), (380, 500), (255, 255, 255), 20)
    cv2.rectangle(img, (480, 60), (640, 170), (200, 210, 230), -1)  # the school
    cv2.rectangle(img, (120, 320), (260, 420), (190, 220, 200), -1)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def village_map(ui_system: UiSystem) -> None:
    """The village's map, uploaded and pinned once for every test that reads it."""
    village = ui_system.village.client
    assert village.put("/api/v1/maps/image", content=village_png()).status_code == 200
    r = village.put(
        "/api/v1/maps/layout", json={"pins": [{"camera": VILLAGE_CAM, "x": 0.7, "y": 0.25}]}
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def page(ui_system: UiSystem, village_map: None) -> Iterator[Any]:
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        ui_login(p, ui_system.town.base_url)
        yield p
        assert not errors, errors
        p.context.close()


def _open_map_view(page: Any, node: str = "") -> None:
    """The map view showing ``node``'s map, as the server has it now."""
    page.click('.tab[data-view="map"]')
    page.wait_for_selector("#view-map:not([hidden]) #map-crumbs a", timeout=10_000)
    page.evaluate("(node) => window.gw.emap.open(node)", node)
    page.wait_for_selector(f'#view-map[data-node="{node}"]', timeout=10_000)


def _town_map_with_the_village(ui_system: UiSystem) -> None:
    """The town's map with the village's area (what the drag-and-drop test makes by hand)."""
    town = ui_system.town.client
    doc = town.get("/api/v1/maps")
    if doc.status_code == 200 and any(a["node"] == VILLAGE for a in doc.json()["areas"]):
        return
    assert town.put("/api/v1/maps/image", content=TOWN_SVG.encode()).status_code == 200
    layout = {
        "pins": [{"camera": TOWN_CAM, "x": 0.55, "y": 0.4}],
        "areas": [{"node": VILLAGE, "x": 0.15, "y": 0.6, "w": 0.12, "h": 0.08}],
    }
    assert town.put("/api/v1/maps/layout", json=layout).status_code == 200


def test_upload_and_place_pins_by_drag_and_drop(
    page: Any, ui_system: UiSystem, tmp_path: Path
) -> None:
    ui_system.town.client.delete("/api/v1/maps")  # whatever another test left
    _open_map_view(page)
    # Bad files first: the page says why, and nothing is made.
    junk = tmp_path / "notes.png"
    junk.write_bytes(b"this is a text file, not a map")
    page.set_input_files("#map-file", str(junk))
    page.wait_for_function(
        "() => document.querySelector('#map-error').textContent.includes('不是 PNG')",
        timeout=10_000,
    )
    huge = tmp_path / "scan.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + b"\0" * (21 * 1024 * 1024))
    page.set_input_files("#map-file", str(huge))
    page.wait_for_function(
        "() => document.querySelector('#map-error').textContent.includes('20 MB')",
        timeout=10_000,
    )
    assert ui_system.town.client.get("/api/v1/maps").status_code == 404
    # The real map.
    svg = tmp_path / "城关镇.svg"
    svg.write_text(TOWN_SVG, encoding="utf-8")
    page.set_input_files("#map-file", str(svg))
    page.wait_for_selector("#map-stage:not([hidden]) #map-img[src]", timeout=10_000)
    page.wait_for_function("() => document.querySelector('#map-img').naturalWidth > 0")
    page.click("#map-edit")
    page.wait_for_selector("#map-hint:not([hidden])")
    box = page.locator("#map-img").bounding_box()
    assert box is not None and box["width"] > 200
    page.drag_and_drop(
        f'.tree-cam[data-camera="{TOWN_CAM}"]',
        "#map-stage",
        target_position={"x": box["width"] * 0.55, "y": box["height"] * 0.4},
    )
    page.drag_and_drop(
        f'.tree-node[data-path="{VILLAGE}"] > .row',
        "#map-stage",
        target_position={"x": box["width"] * 0.15, "y": box["height"] * 0.6},
    )
    page.wait_for_selector(f'.map-pin[data-camera="{TOWN_CAM}"]')
    page.wait_for_selector(f'.map-area[data-node="{VILLAGE}"]')
    page.click("#map-save")
    page.wait_for_function(
        "() => document.querySelector('#map-notice').textContent.includes('已保存')",
        timeout=10_000,
    )
    doc = ui_system.town.client.get("/api/v1/maps").json()
    assert doc["kind"] == "svg"
    pin = next(p for p in doc["pins"] if p["camera"] == TOWN_CAM)
    assert abs(pin["x"] - 0.55) < 0.03 and abs(pin["y"] - 0.4) < 0.03, pin
    area = next(a for a in doc["areas"] if a["node"] == VILLAGE)
    assert abs(area["x"] - 0.15) < 0.03 and area["name"] == "东村", area
    page.click("#map-edit")  # done editing
    page.wait_for_selector("#map-hint", state="hidden")
    shot(page, "emap-town-zh-CN")


def test_an_area_opens_the_village_map_and_an_alarm_flashes_its_pin(
    page: Any, ui_system: UiSystem
) -> None:
    _town_map_with_the_village(ui_system)
    _open_map_view(page)
    page.wait_for_selector(f'.map-area[data-node="{VILLAGE}"]', timeout=10_000)
    ref = f"{VILLAGE}/{VILLAGE_CAM}"
    r = ui_system.village.client.post(
        "/api/v1/events", json={"camera": VILLAGE_CAM, "type": "alarm", "data": {"note": "e-map"}}
    )
    assert r.status_code == 201, r.text
    # On the town's map the village's area flashes, then its own map shows the pin flashing.
    page.wait_for_selector(f'.map-area.alarm[data-node="{VILLAGE}"]', timeout=15_000)
    page.click(f'.map-area[data-node="{VILLAGE}"]')
    page.wait_for_selector(f'#view-map[data-node="{VILLAGE}"] .map-pin[data-camera="{ref}"]')
    page.wait_for_function("() => document.querySelector('#map-img').naturalWidth === 800")
    page.wait_for_selector(f'.map-pin.alarm[data-camera="{ref}"]', timeout=15_000)
    assert page.locator(f'.map-pin[data-camera="{ref}"]').get_attribute("data-status") == "online"
    assert page.locator("#map-edit").is_hidden()  # the village's map is changed at the village
    shot(page, "emap-village-alarm-zh-CN")


@pytest.mark.usefixtures("village_map")  # any order: shuffled runs put this test first
def test_the_city_reads_the_village_map_two_hops_down(ui_system: UiSystem) -> None:
    city = ui_system.city.client
    node = f"town-a/{VILLAGE}"
    r = city.get("/api/v1/maps", params={"node": node})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["node"] == node and doc["editable"] is False
    pins = {p["camera"]: p for p in doc["pins"]}
    assert pins[f"{node}/{VILLAGE_CAM}"]["name"] == "小学门口"

    def online() -> bool:  # a fresh system: the camera's state climbs two hops first
        now = city.get("/api/v1/maps", params={"node": node}).json()
        return {p["camera"]: p["status"] for p in now["pins"]}[f"{node}/{VILLAGE_CAM}"] == "online"

    wait_for(online, 30, "the village camera online on the city's map", every=0.3)
    img = city.get(doc["image_url"])
    assert img.status_code == 200 and img.content == village_png()
    assert city.get("/api/v1/maps", params={"node": "town-a/village-9"}).status_code == 404


def test_clicking_a_pin_plays_it_and_sends_it_to_a_tile(page: Any) -> None:
    _open_map_view(page, VILLAGE)
    ref = f"{VILLAGE}/{VILLAGE_CAM}"
    page.click(f'.map-pin[data-camera="{ref}"]')
    page.wait_for_selector(f'#map-popup:not([hidden])[data-camera="{ref}"] video')

    def playing() -> Any:
        return page.evaluate(
            """() => { const v = document.querySelector('#map-popup video');
                       return v && v.readyState >= 2 && v.currentTime > 0.5
                         && v.videoWidth > 0; }"""
        )

    wait_for(playing, 30, "the popup playing the camera", every=0.3)
    shot(page, "emap-popup-zh-CN")
    page.select_option("#map-popup .popup-tile", "1")
    page.click("#map-popup .popup-send")
    page.wait_for_selector("#view-live:not([hidden])")
    page.wait_for_selector("#map-popup", state="hidden")

    def on_tile() -> Any:
        return page.evaluate(
            """(ref) => { const tile = window.gw.wall.tiles[1];
                          const v = tile && tile.video;
                          return tile.ref === ref && v && v.readyState >= 2
                            && v.currentTime > 0.3; }""",
            ref,
        )

    wait_for(on_tile, 30, "the camera playing on tile 2", every=0.3)


def test_the_map_in_english(page: Any, ui_system: UiSystem) -> None:
    _town_map_with_the_village(ui_system)
    _open_map_view(page)
    page.wait_for_selector(f'.map-area[data-node="{VILLAGE}"]', timeout=10_000)
    page.click("#lang-toggle")
    page.wait_for_function(
        "() => document.querySelector('.tab[data-view=\"map\"]').textContent === 'E-map'"
    )
    assert page.locator("#map-edit").inner_text() == "Edit pins"
    page.wait_for_selector(f'.map-area[data-node="{VILLAGE}"]', timeout=10_000)
    shot(page, "emap-town-en")
    page.click(f'.map-area[data-node="{VILLAGE}"]')
    page.wait_for_selector(f'.map-pin[data-camera="{VILLAGE}/{VILLAGE_CAM}"]', timeout=10_000)
    shot(page, "emap-village-en")
    page.click("#lang-toggle")  # back to Chinese for whatever runs next on this page
