"""A three-gateway system (市 city ← 镇 town ← 村 village) for the operator UI tests.

Real processes on loopback: two ``gateway sim`` (four cameras under the village, two
under the town, one of them reached by ONVIF so it has PTZ) and three ``gateway run``
joined by cascade tokens. The village's first camera has motion detection with short
timings and event recording with 2 s segments; the town has a linkage rule (预案) that
puts a group of four cameras on the wall when that camera sees motion.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.browser.pages import CHROMIUM, CHROMIUM_ARGS
from tests.cascade_support import Levels, all_cameras, start_levels, wait_for
from tests.support import ADMIN_PASSWORD, ROOT, GatewayProcess, SimProcess

ARTIFACTS = ROOT / "test-artifacts" / "ui"

VILLAGE_NAMES = ["村口路口", "小学门口", "卫生室", "村委会"]
TOWN_NAMES = ["镇政府大门", "镇中心街"]
# The camera whose motion the tests script, and the linkage group it brings up.
MOTION_CAM = "village-1/cam-01"
RULE_NAME = "东村路口报警联动"
GROUP_AT_TOWN = ["cam-01", "cam-02", "village-1/cam-02", "village-1/cam-03"]
MOTION = {
    "enabled": True,
    "fps": 8,
    "sensitivity": 0.6,
    "start_after_s": 0.2,
    "end_after_s": 1.5,
    "cooldown_s": 0.5,
    # The sim burns a clock barcode into the top strip: it changes every frame.
    "masks": [[[0, 0], [1, 0], [1, 0.1], [0, 0.1]]],
}
RECORDING = {"mode": "events", "segment_s": 2, "pre_s": 2, "post_s": 3}


@dataclass
class UiSystem:
    """The running system; paths are as the city sees them (``town-a/…``)."""

    levels: Levels
    village_sim: SimProcess
    town_sim: SimProcess
    procs: list[Any] = field(default_factory=list)

    @property
    def spare_camera(self) -> dict[str, Any]:
        """The town sim's camera no gateway has (to discover and add)."""
        return self.town_sim.cameras[len(TOWN_NAMES)]

    @property
    def city(self) -> GatewayProcess:
        return self.levels.city

    @property
    def town(self) -> GatewayProcess:
        return self.levels.town

    @property
    def village(self) -> GatewayProcess:
        return self.levels.village

    def city_paths(self) -> list[str]:
        """Every camera path at the city: the town's first, then the village's."""
        town = [f"town-a/cam-0{i + 1}" for i in range(len(TOWN_NAMES))]
        village = [f"town-a/village-1/cam-0{i + 1}" for i in range(len(VILLAGE_NAMES))]
        return town + village


def random_base() -> str:
    return f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.1"


def _sim(tmp: Path, count: int, name: str) -> SimProcess:
    return SimProcess(
        tmp,
        "--cameras",
        str(count),
        "--base",
        random_base(),
        "--size",
        "640x360",
        "--sub-size",
        "320x180",
        "--fps",
        "15",
        "--gop",
        "15",
        "--bitrate",
        "600",
        name=name,
    )


def _rtsp_camera(cam: dict[str, Any], cid: str, name: str, location: str) -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "location": location,
        "rtsp_url": cam["rtsp_main"],
        "sub_rtsp_url": cam["rtsp_sub"],
    }


def start_ui_system(tmp: Path) -> UiSystem:
    """Start everything; wait until the city's tree holds every camera."""
    procs: list[Any] = []
    try:
        vsim = _sim(tmp, len(VILLAGE_NAMES), "village-sim")
        procs.append(vsim)
        # One more than the town configures: the settings test discovers and adds it.
        tsim = _sim(tmp, len(TOWN_NAMES) + 1, "town-sim")
        procs.append(tsim)

        village_cams = [
            _rtsp_camera(c, f"cam-0{i + 1}", VILLAGE_NAMES[i], f"东村{VILLAGE_NAMES[i]}")
            for i, c in enumerate(vsim.cameras)
        ]
        village_cams[0]["motion"] = MOTION
        village_cams[0]["recording"] = RECORDING
        ptz = tsim.cameras[0]
        town_cams = [
            {
                "id": "cam-01",
                "name": TOWN_NAMES[0],
                "location": "城关镇政府",
                "onvif": {
                    "host": ptz["address"],
                    "port": ptz["http_port"],
                    "username": ptz["username"],
                    "password": ptz["password"],
                },
            },
            _rtsp_camera(tsim.cameras[1], "cam-02", TOWN_NAMES[1], "城关镇中心街"),
        ]
        rule = {
            "name": RULE_NAME,
            "match": {"camera": MOTION_CAM, "type": "motion"},
            "cameras": GROUP_AT_TOWN,
            "wall": True,
            "record_s": 0,
            "cooldown_s": 600,
        }
        common = {
            "relay": {"interfaces": ["127.0.0.1"]},
            "motion": {"enabled": False},
            "recording": {"mode": "off"},
        }

        def start(cfg: dict[str, Any], name: str) -> GatewayProcess:
            gw = GatewayProcess(tmp, {**common, **cfg}, name=name)
            procs.append(gw)
            return gw

        levels = start_levels(
            start,
            village_extra={"cameras": village_cams},
            town_extra={"cameras": town_cams, "linkage": [rule]},
        )
        system = UiSystem(levels, vsim, tsim, procs)

        def all_known() -> bool:
            cams = all_cameras(levels.city.client.get("/api/v1/tree").json())
            # The motion camera streams from the start, so it is online once it does.
            return all(p in cams for p in system.city_paths()) and (
                cams[f"town-a/{MOTION_CAM}"]["status"] == "online"
            )

        wait_for(all_known, 45, "every camera in the city's tree", every=0.5)
        return system
    except BaseException:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()
        raise


def stop_ui_system(system: UiSystem) -> None:
    for proc in reversed(system.procs):
        with contextlib.suppress(Exception):
            proc.stop()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, lang: str | None = None) -> Any:
    """A page of its own (own localStorage); ``lang`` presets the language."""
    context = browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
    page = context.new_page()
    if lang:
        page.add_init_script(f"localStorage.setItem('gw_lang', {json.dumps(lang)})")
    return page


def ui_login(page: Any, base_url: str, user: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Log in through the form, as an operator does."""
    page.goto(base_url + "/")
    page.wait_for_selector("#login-form", state="visible", timeout=15_000)
    page.fill("#login-user", user)
    page.fill("#login-pass", password)
    page.click("#login-submit")
    page.wait_for_selector("body[data-ready] #app-view:not([hidden]) .tree-node", timeout=15_000)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def browser_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by the Chromium processes this test started."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        if "chrom" in stat[stat.index("(") + 1 : stat.rindex(")")].lower():
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()

    def mine(pid: int) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == me:
                return True
            if pid <= 1:
                return False
        return False

    return sum(t for pid, t in times.items() if mine(pid))
