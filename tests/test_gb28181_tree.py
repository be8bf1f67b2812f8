"""The three-level acceptance with real processes: city ← town ← 3 villages (five ``gateway
run``), 102 cameras in all, and the city pushes the whole tree to SIPp as one catalog: every
camera once, the town and each village a virtual organisation (216) under the city's business
group (215), every camera's ParentID its own gateway's folder. The cameras are configured but
never streamed (motion and recording off), so the five gateways stay cheap."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.cascade_support import all_cameras, issue_token_api, wait_for
from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, Sipp, free_port
from tests.support import GatewayProcess

VILLAGE_CAMERAS = 33
BEAT = {"heartbeat_s": 1.0, "offline_after_s": 5.0}
SIPP_DIR = Path(__file__).parent / "sipp"


def _cameras(prefix: str, n: int) -> list[dict[str, Any]]:
    """Cameras that are listed, never opened: nothing consumes their stream."""
    return [
        {
            "id": f"cam-{i:02d}",
            "name": f"{prefix}摄像机{i:02d}",
            "rtsp_url": f"rtsp://{HOST}:9/{prefix}-{i}",
            "motion": {"enabled": False},
        }
        for i in range(1, n + 1)
    ]


def _catalog(trace: bytes) -> list[ET.Element]:
    items: list[ET.Element] = []
    for raw in re.findall(rb"<Response>.*?</Response>", trace, re.S):
        root = ET.fromstring(raw.decode("gb18030"))
        if root.findtext("CmdType") == "Catalog":
            assert root.findtext("SumNum") == "107"
            items += root.findall("DeviceList/Item")
    return items


def test_city_pushes_town_and_three_villages_whole_with_parent_ids(tmp_path: Path) -> None:
    procs: list[Any] = []
    sip_port, platform_port = free_port(), free_port()

    def start(config: dict[str, Any], name: str) -> GatewayProcess:
        gw = GatewayProcess(tmp_path, config, name=name)
        procs.append(gw)
        return gw

    try:
        city = start(
            {
                "cameras": _cameras("市", 1),
                "cascade": {"level": "city", "id": "city", "name": "市指挥中心", **BEAT},
                "gb28181": {
                    "upstream": [
                        {
                            "id": "province",
                            "server_id": SERVER_ID,
                            "domain": DOMAIN,
                            "host": HOST,
                            "port": platform_port,
                            "device_id": DEVICE_ID,
                            "password": "tree-pw",
                            "local_host": HOST,
                            "local_port": sip_port,
                            "civil_code": "340200",
                            "catalog_page": 4,
                            "keepalive_s": 60,
                        }
                    ]
                },
            },
            "city",
        )
        town = start(
            {
                "cameras": _cameras("镇", 2),
                "cascade": {
                    "level": "town",
                    "id": "town-a",
                    "name": "城关镇",
                    **BEAT,
                    "parent": {"url": city.base_url, "token": issue_token_api(city, "town-a")},
                },
            },
            "town",
        )
        tokens = {v: issue_token_api(town, f"village-{v}") for v in (1, 2, 3)}

        def village(v: int) -> Callable[[], GatewayProcess]:
            cascade = {"level": "village", "id": f"village-{v}", "name": f"{v}村", **BEAT}
            cascade["parent"] = {"url": town.base_url, "token": tokens[v]}
            config = {"cameras": _cameras(f"{v}村", VILLAGE_CAMERAS), "cascade": cascade}
            return lambda: start(config, f"village-{v}")

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda f: f(), [village(v) for v in (1, 2, 3)]))

        def city_cameras() -> dict[str, Any]:
            cams = all_cameras(city.client.get("/api/v1/tree").json())
            return cams if len(cams) == 1 + 2 + 3 * VILLAGE_CAMERAS else {}

        cams = wait_for(city_cameras, 60, "102 cameras in the city's tree")
        assert "town-a/village-3/cam-33" in cams
        # Nothing streams: the cameras are only listed.
        assert all(not s["consumers"] for s in city.client.get("/api/v1/streams").json()["streams"])

        trace = tmp_path / "catalog.log"
        sipp = Sipp(
            "gb_platform_catalog.xml",
            tmp_path,
            *("-oocsf", str(SIPP_DIR / "gb_platform_ooc.xml")),
            *("-key", "device", DEVICE_ID, "-key", "server", SERVER_ID, "-key", "sn", "41"),
            *("-d", "600000", "-m", "1", "-trace_msg", "-message_file", str(trace)),
            f"{HOST}:{sip_port}",
            port=platform_port,
        )
        procs.append(sipp)

        def pushed() -> bool:
            up = city.client.get("/api/v1/gb28181/upstream/province").json()
            return bool(up["status"]["channels_pushed"] == 107)

        wait_for(pushed, 60, "107 channels pushed")
        time.sleep(0.2)  # SIPp logs the last MESSAGE as it answers it
        channels = city.client.get("/api/v1/gb28181/upstream/province/channels").json()
    finally:
        for proc in reversed(procs):
            proc.stop()

    items = _catalog(trace.read_bytes())
    got = {i.findtext("DeviceID"): i for i in items}
    assert len(items) == len(got) == 107, "every channel exactly once"
    by_camera = {c["camera"]: c["gb_id"] for c in channels["channels"] if c["kind"] == "camera"}
    folders = {c["name"]: c["gb_id"] for c in channels["channels"] if c["kind"] != "camera"}
    group, town_id = folders["市指挥中心"], folders["城关镇"]
    assert group[10:13] == "215" and got[group].findtext("ParentID") in (None, "")
    assert town_id[10:13] == "216" and got[town_id].findtext("ParentID") == group
    for v in (1, 2, 3):
        village_id = folders[f"{v}村"]
        assert village_id[10:13] == "216"
        assert got[village_id].findtext("ParentID") == town_id  # the third level keeps its parent
        assert got[village_id].findtext("BusinessGroupID") == group
        for c in range(1, VILLAGE_CAMERAS + 1):
            item = got[by_camera[f"town-a/village-{v}/cam-{c:02d}"]]
            assert item.findtext("ParentID") == village_id
            assert item.findtext("Name") == f"{v}村摄像机{c:02d}"
            assert item.findtext("CivilCode") == "340200"
    assert got[by_camera["town-a/cam-02"]].findtext("ParentID") == town_id
    assert got[by_camera["cam-01"]].findtext("ParentID") == group
    cameras = [i for i in items if (i.findtext("DeviceID") or "")[10:13] == "132"]
    assert len(cameras) == 102
