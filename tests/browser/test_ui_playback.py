"""Playback of a gateway's own camera in Chromium (录像回放), at the village.

Open the motion alarm's clip, then click on the timeline where a recorded segment
is: the clip starts there and plays; the speed and the download link follow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.browser.ui_system import UiSystem, chromium, new_page, shot, ui_login
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

VIDEO = """() => { const v = document.querySelector('video.pb-player');
  return { ready: v.readyState, t: v.currentTime, err: v.error && v.error.code, src: v.currentSrc,
           rate: v.playbackRate }; }"""


def _segments(ui_system: UiSystem) -> list[dict[str, Any]]:
    r = ui_system.village.client.get("/api/v1/recordings", params={"camera": "cam-01"})
    return [s for s in r.json()["segments"] if not s["recording"]]


@pytest.fixture(scope="module")
def page(ui_system: UiSystem) -> Iterator[Any]:
    if not _segments(ui_system):  # run alone: make an event (and its recording) first
        ui_system.village_sim.motion("cam-01", True)
        time.sleep(3)
        ui_system.village_sim.motion("cam-01", False)
    wait_for(lambda: _segments(ui_system), 30, "a closed segment of the village camera")
    with chromium() as browser:
        p = new_page(browser)
        errors: list[str] = []
        p.on("pageerror", lambda e: errors.append(str(e)))
        ui_login(p, ui_system.village.base_url)
        yield p
        assert not errors, errors
        p.context.close()


def test_timeline_click_plays_from_there_with_speed_and_download(
    page: Any, ui_system: UiSystem
) -> None:
    row = page.locator('#alarm-list li.motion[data-camera="cam-01"]').first
    row.locator("button.play").click()
    page.wait_for_selector("#view-playback:not([hidden])")
    assert page.locator(".pb-camera").input_value() == "cam-01"
    assert page.locator(".pb-zoom").input_value() == "600000"  # zoomed onto the event
    first = wait_for(lambda: (v := page.evaluate(VIDEO))["ready"] >= 2 and v, 20, "the clip")
    assert "/api/v1/recordings/cam-01/clip.mp4?start=" in first["src"]

    # Click on the timeline in the middle of the first recorded segment.
    seg = _segments(ui_system)[0]
    mid = (datetime.fromisoformat(seg["start"]).timestamp() + seg["duration"] / 2) * 1000
    frac = page.evaluate(
        "(ms) => (ms - window.gw.playback.start().getTime()) / window.gw.playback.span", mid
    )
    assert 0 < frac < 1, frac
    box = page.locator(".timeline canvas").bounding_box()
    page.mouse.click(box["x"] + frac * box["width"], box["y"] + box["height"] / 2)
    page.wait_for_function(
        "(prev) => document.querySelector('video.pb-player').currentSrc !== prev", arg=first["src"]
    )
    page.select_option(".pb-speed", "2")
    a = wait_for(lambda: (v := page.evaluate(VIDEO))["ready"] >= 2 and v, 20, "the clicked clip")
    time.sleep(1.5)
    b = page.evaluate(VIDEO)
    assert b["err"] is None and b["t"] > a["t"] + 1.0, (a, b)  # 2× speed
    assert b["rate"] == 2
    start = page.evaluate(
        "() => new URL(document.querySelector('video.pb-player').currentSrc)"
        ".searchParams.get('start')"
    )
    clicked = datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000
    # The canvas is 1400 px wide over 10 minutes: a click is accurate to ~0.5 s.
    assert abs(clicked - mid) < 2000, (clicked, mid)
    href = page.get_attribute(".pb-download", "href")
    assert "download=1" in href and "/api/v1/recordings/cam-01/clip.mp4" in href
    r = ui_system.village.client.get(href)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert "attachment" in r.headers.get("content-disposition", "")
    # the evidence export page, preset with this camera and the clip's span
    exp = page.get_attribute(".pb-export", "href")
    assert exp.startswith("export.html?camera=cam-01&start=") and "&end=" in exp
    shot(page, "16-playback-local")
