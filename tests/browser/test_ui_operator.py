"""The operator's page (issue 7) in real headless Chromium against a city ← town ← village system.

One operator's session on one page at the city (the command centre), on the system of
``ui_system``: log in, the tree, a 4-split wall, scripted motion → an alarm with its
thumbnail (timed at the town and at the city), the linkage switching the wall, playback
of the alarm's clip, English, and 16 tiles playing at once. Each step builds on the one
before (the alarm the linkage and the playback use, the logged-in page), so the session
is one test whose steps run in this order, whatever order the suite runs in.
Screenshots go to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.ui_system import (
    GROUP_AT_TOWN,
    MOTION_CAM,
    UiSystem,
    browser_cpu_seconds,
    chromium,
    new_page,
    shot,
    ui_login,
)
from tests.cascade_support import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CITY_MOTION_CAM = f"town-a/{MOTION_CAM}"
TILE_FRAMES = "() => window.gw.wall.tileStats().map((s) => [s.ref, s.framesDecoded, s.state])"

# Notes when a new alarm row for the camera appears and when its thumbnail has loaded.
WATCH_ALARM = """(camera) => {
  window.__alarm = { row: null, thumb: null };
  const rows = () => [...document.querySelectorAll('#alarm-list li.alarm.motion')]
    .filter((li) => li.dataset.camera === camera);
  const before = new Set(rows().map((li) => li.dataset.id));  // earlier events do not count
  const check = () => {
    const row = rows().find((li) => !before.has(li.dataset.id));
    if (!row) return;
    if (!window.__alarm.row) window.__alarm.row = Date.now();
    const img = row.querySelector('img');
    const loaded = img && img.complete && img.naturalWidth > 0;
    if (loaded && !window.__alarm.thumb) window.__alarm.thumb = Date.now();
  };
  const list = document.getElementById('alarm-list');
  new MutationObserver(check).observe(list, { childList: true, subtree: true });
  list.addEventListener('load', check, true);
  setInterval(check, 20);
}"""


class SnapshotWatch(threading.Thread):
    """Polls a gateway's API for the newest motion event's snapshot; notes when it is served."""

    def __init__(self, gw: Any, camera: str) -> None:
        super().__init__(daemon=True)
        self.gw, self.camera = gw, camera
        self.at: float | None = None
        self.known = {e["id"] for e in self._events()}
        self._halt = threading.Event()
        self.start()

    def _events(self) -> list[dict[str, Any]]:
        r = self.gw.client.get("/api/v1/events", params={"camera": self.camera, "type": "motion"})
        return r.json() if r.status_code == 200 else []

    def run(self) -> None:
        while not self._halt.is_set() and self.at is None:
            new = [e for e in self._events() if e["id"] not in self.known]
            if (
                new
                and self.gw.client.get(f"/api/v1/events/{new[0]['id']}/snapshot.jpg").status_code
                == 200
            ):
                self.at = time.time()
            time.sleep(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def city_page(browser: Any, ui_system: UiSystem) -> Iterator[Any]:
    page = new_page(browser)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    page.context.close()


def frames(page: Any) -> list[tuple[str, int, str]]:
    return [tuple(x) for x in page.evaluate(TILE_FRAMES)]


def assert_tiles_play(page: Any, refs: list[str], timeout: float = 30) -> dict[str, float]:
    """Each tile showing ``refs`` decodes frames, and keeps decoding; frames/s per tile."""

    def playing() -> bool:
        got = frames(page)
        return [r for r, _, _ in got[: len(refs)]] == refs and all(
            n > 0 and state == "playing" for _, n, state in got[: len(refs)]
        )

    wait_for(playing, timeout, f"tiles {refs} playing", every=0.25)
    first, t0 = frames(page), time.monotonic()
    time.sleep(3)
    second, t1 = frames(page), time.monotonic()
    rates = {}
    for i, ref in enumerate(refs):
        assert second[i][1] > first[i][1] + 10, (ref, first[i], second[i])
        rates[f"{i}:{ref}"] = (second[i][1] - first[i][1]) / (t1 - t0)
    return rates


def step_login_form_in_chinese_then_the_tree_shows_city_town_village(
    city_page: Any, ui_system: UiSystem
) -> None:
    page = city_page
    page.goto(ui_system.city.base_url + "/")
    page.wait_for_selector("#login-form", state="visible")
    assert page.inner_text("#login-submit") == "登录"
    assert page.inner_text("#login-form h2") == "登录"
    assert "用户名" in page.inner_text("#login-form")
    # A wrong password says so, in Chinese, and stays on the form.
    page.fill("#login-user", "admin")
    page.fill("#login-pass", "wrong-password")
    page.click("#login-submit")
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert page.inner_text("#login-error") == "用户名或密码错误"
    shot(page, "01-login")

    ui_login(page, ui_system.city.base_url)
    assert page.inner_text(".tab.active") == "实时预览"
    levels = page.eval_on_selector_all(
        ".tree-node",
        "ns => ns.map((n) => [n.dataset.level, n.querySelector('.level').textContent])",
    )
    assert ["city", "市"] in levels and ["town", "镇"] in levels and ["village", "村"] in levels
    counts = page.eval_on_selector_all(
        ".tree-node > .row .count", "cs => cs.map((c) => c.textContent)"
    )
    online, total = (int(x) for x in counts[0].split("/"))
    assert total == 6 and 1 <= online <= 6, counts  # the city sees all six cameras
    assert counts[2].endswith("/4"), counts  # the village has four
    motion_cam = page.locator(f'.tree-cam[data-camera="{CITY_MOTION_CAM}"]')
    assert motion_cam.get_attribute("data-status") == "online"
    assert motion_cam.locator(".count").inner_text() == "在线"
    # Search by location narrows the tree to the matching camera.
    page.fill("#tree-search", "小学")
    page.wait_for_function("() => document.querySelectorAll('.tree-cam').length === 1")
    page.fill("#tree-search", "")
    shot(page, "02-tree")


def step_four_split_wall_plays_four_feeds(city_page: Any, ui_system: UiSystem) -> None:
    page = city_page
    page.click('.layout-btn[data-layout="4"]')
    # Drag the village node onto the first tile: its four cameras fill the wall.
    page.drag_and_drop('.tree-node[data-level="village"] > .row', '.tile[data-index="0"]')
    village = [f"town-a/village-1/cam-0{i}" for i in range(1, 5)]
    rates = assert_tiles_play(page, village)
    print("4-split frames decoded per second:", {k: round(v, 1) for k, v in rates.items()})
    overlay = page.inner_text('.tile[data-index="0"] .overlay')
    assert "村口路口" in overlay and "kbps" in overlay, overlay
    shot(page, "03-wall-4")


def quiet_and_rearmed(ui_system: UiSystem) -> None:
    """No motion under way at the village camera and the town's linkage out of its cooldown,
    whatever other modules sharing ``ui_system`` did with them before."""
    ui_system.village_sim.motion("cam-01", False)

    def ended() -> bool:
        evs = ui_system.town.client.get(
            "/api/v1/events", params={"camera": MOTION_CAM, "type": "motion"}
        ).json()
        return not evs or evs[0]["end"] is not None

    wait_for(ended, 30, "no motion event open at the town", every=0.3)
    rules = ui_system.town.client.get("/api/v1/linkage").json()["rules"]
    r = ui_system.town.client.put("/api/v1/linkage", json=rules)  # re-set: cooldowns restart
    assert r.status_code == 200, r.text


def step_motion_shows_an_alarm_with_a_thumbnail_within_2s(
    city_page: Any, browser: Any, ui_system: UiSystem
) -> None:
    page = city_page
    quiet_and_rearmed(ui_system)
    town = new_page(browser)
    try:
        ui_login(town, ui_system.town.base_url)
        town_cam = MOTION_CAM
        town.evaluate(WATCH_ALARM, town_cam)
        page.evaluate(WATCH_ALARM, CITY_MOTION_CAM)
        time.sleep(0.5)  # both pages' event streams are open (they were before login ended)
        served = SnapshotWatch(ui_system.town, MOTION_CAM)
        t0 = time.time() * 1000
        ui_system.village_sim.motion("cam-01", True)

        def seen(p: Any) -> Any:
            got = p.evaluate("() => window.__alarm")
            return got if got["thumb"] else None

        at_town = wait_for(lambda: seen(town), 15, "the alarm with its thumbnail at the town")
        at_city = wait_for(lambda: seen(page), 15, "the alarm with its thumbnail at the city")
        served.stop()
        lat = {
            # When the town's API first served the event's picture (polled every 50 ms).
            "town_api_snapshot_ms": (served.at or 0) * 1000 - t0,
            "town_row_ms": at_town["row"] - t0,
            "town_thumb_ms": at_town["thumb"] - t0,
            "city_row_ms": at_city["row"] - t0,
            "city_thumb_ms": at_city["thumb"] - t0,
        }
        print("motion start → alarm row / thumbnail:", {k: round(v) for k, v in lat.items()})
        shot(town, "04-alarm-town")
        # The town is where the village's events arrive: the acceptance figure (2 s).
        assert lat["town_thumb_ms"] < 2000, lat
        # The page adds little to when the town's API has the picture.
        assert lat["town_thumb_ms"] - lat["town_api_snapshot_ms"] < 600, lat
        # One hop more (the city fetches the picture from the town): generous on a busy machine.
        assert lat["city_row_ms"] < 2000 and lat["city_thumb_ms"] < 5000, lat
        row = page.locator(f'#alarm-list li.motion[data-camera="{CITY_MOTION_CAM}"]').first
        assert row.locator(".cam").inner_text() == "东村 · 村口路口"
        assert row.locator(".type").inner_text() == "移动侦测"
        shot(page, "05-alarm-city")
    finally:
        town.context.close()


def step_linkage_switches_the_wall_to_its_group(city_page: Any) -> None:
    page = city_page
    group = [f"town-a/{c}" for c in GROUP_AT_TOWN]
    row = page.locator("#alarm-list li.linkage").first
    row.wait_for(timeout=15_000)
    assert "东村路口报警联动" in row.inner_text()
    # The group's cameras by place and name, e.g. "→ 城关镇 · 镇政府大门、…、东村 · 小学门口".
    assert "城关镇 · 镇政府大门" in row.inner_text() and "东村 · 小学门口" in row.inner_text()
    wait_for(
        lambda: [r for r, _, _ in frames(page)] == group,
        10,
        "the wall showing the linkage group",
    )
    assert "联动" in page.inner_text("#wall-notice")
    rates = assert_tiles_play(page, group)
    print("linkage group frames decoded per second:", {k: round(v, 1) for k, v in rates.items()})
    shot(page, "06-linkage-wall")


def step_playback_of_the_alarm_clip_plays(city_page: Any, ui_system: UiSystem) -> None:
    page = city_page
    ui_system.village_sim.motion("cam-01", False)

    def ended() -> Any:
        evs = ui_system.city.client.get(
            "/api/v1/events", params={"camera": CITY_MOTION_CAM, "type": "motion"}
        ).json()
        return evs and evs[0]["end"]

    wait_for(ended, 20, "the motion event's end at the city", every=0.3)
    time.sleep(4)  # the post-roll (3 s) is written into a closed segment
    # The row is re-rendered with the event's end; click its 回放 button.
    row = page.locator(f'#alarm-list li.motion[data-camera="{CITY_MOTION_CAM}"]').first
    row.locator("button.play").click()
    page.wait_for_selector("#view-playback:not([hidden]) video.pb-player")
    assert page.locator(".pb-camera").input_value() == CITY_MOTION_CAM

    def progress() -> dict[str, Any]:
        return page.evaluate(
            "() => { const v = document.querySelector('video.pb-player');"
            " return { ready: v.readyState, t: v.currentTime, err: v.error && v.error.code,"
            " src: v.currentSrc }; }"
        )

    first = wait_for(lambda: (p := progress())["ready"] >= 2 and p, 20, "the clip loaded")
    time.sleep(1.5)
    second = progress()
    assert second["err"] is None, second
    assert second["t"] > first["t"] + 0.5, (first, second)
    assert "/api/v1/tree/recordings/town-a/village-1/cam-01/clip.mp4" in second["src"]
    assert "段录像" in page.inner_text(".pb-info") or "→" in page.inner_text(".pb-info")
    shot(page, "07-playback")


def step_switching_to_english_changes_the_labels(city_page: Any) -> None:
    page = city_page
    page.click('.tab[data-view="live"]')
    page.click("#lang-toggle")
    assert page.inner_text('.tab[data-view="live"]') == "Live view"
    assert page.inner_text('.tab[data-view="playback"]') == "Playback"
    assert page.inner_text(".sidebar h3") == "Device tree"
    assert page.inner_text(".alarms-head h3") == "Alarms"
    levels = page.eval_on_selector_all(
        ".tree-node > .row .level", "ls => ls.map((l) => l.textContent)"
    )
    assert levels[:3] == ["City", "Town", "Village"], levels
    assert page.locator("#lang-toggle").inner_text() == "中文"
    shot(page, "08-english")
    page.click("#lang-toggle")
    assert page.inner_text('.tab[data-view="live"]') == "实时预览"


def step_sixteen_tiles_play_and_the_page_stays_responsive(
    city_page: Any, ui_system: UiSystem
) -> None:
    page = city_page
    paths = ui_system.city_paths()
    refs = [paths[i % len(paths)] for i in range(16)]
    page.evaluate(
        "(refs) => { window.gw.wall.setLayout(16, { keep: false }); window.gw.wall.fill(refs); }",
        refs,
    )
    rates = assert_tiles_play(page, refs, timeout=60)
    cpu0, t0 = browser_cpu_seconds(), time.monotonic()
    time.sleep(3)
    cpu = (browser_cpu_seconds() - cpu0) / (time.monotonic() - t0)
    # Responsiveness while 16 tiles decode: input-to-handler delay of real clicks and
    # the spacing of animation frames.
    page.evaluate(
        """() => {
      window.__lat = [];
      document.getElementById('tree-search').addEventListener('pointerdown',
        (e) => window.__lat.push(performance.now() - e.timeStamp));
      window.__raf = [];
      let last = performance.now();
      const tick = (now) => {
        window.__raf.push(now - last);
        last = now;
        if (window.__raf.length < 300) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    }"""
    )
    for _ in range(10):
        page.click("#tree-search")
        time.sleep(0.2)
    time.sleep(2)
    clicks = sorted(page.evaluate("() => window.__lat"))
    raf = sorted(page.evaluate("() => window.__raf.slice(5)"))
    per_tile = sorted(rates.values())
    median = per_tile[len(per_tile) // 2]
    summary = {
        "frames_per_tile_per_s_median": round(median, 1),
        "frames_per_tile_per_s_min": round(per_tile[0], 1),
        "frames_per_s_all_tiles": round(sum(per_tile), 1),
        "click_to_handler_ms_median": round(clicks[len(clicks) // 2], 1),
        "click_to_handler_ms_max": round(clicks[-1], 1),
        "raf_interval_ms_median": round(raf[len(raf) // 2], 1),
        "raf_interval_ms_p95": round(raf[int(len(raf) * 0.95)], 1),
        # Steady state, 3 s, all of the browser's processes (the machine has 2 cores).
        "chromium_cpu_cores": round(cpu, 2),
    }
    print("16 tiles:", summary)
    shot(page, "09-wall-16")
    assert len(clicks) == 10
    assert summary["click_to_handler_ms_max"] < 500, summary
    assert summary["raf_interval_ms_median"] < 100, summary
    assert median > 5, summary  # sources send 15 fps
    assert not page.errors, page.errors


@pytest.mark.timeout(900)
def test_an_operators_session_at_the_city(
    city_page: Any, browser: Any, ui_system: UiSystem
) -> None:
    step_login_form_in_chinese_then_the_tree_shows_city_town_village(city_page, ui_system)
    step_four_split_wall_plays_four_feeds(city_page, ui_system)
    step_motion_shows_an_alarm_with_a_thumbnail_within_2s(city_page, browser, ui_system)
    step_linkage_switches_the_wall_to_its_group(city_page)
    step_playback_of_the_alarm_clip_plays(city_page, ui_system)
    step_switching_to_english_changes_the_labels(city_page)
    step_sixteen_tiles_play_and_the_page_stays_responsive(city_page, ui_system)
