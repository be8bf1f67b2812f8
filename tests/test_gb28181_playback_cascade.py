"""A child's recordings reach the upper platform through our cascade: two gateway
processes (a city with GB/T 28181 up to SIPp, a town recording a simulated camera);
SIPp finds the town camera's channel in the city's Catalog, asks RecordInfo and
downloads a recorded span, which comes up the tree as the cascade's clip and leaves
the city as PS over RTP (checked with ffprobe)."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.gb28181.records import gb_time
from tests.cascade_support import issue_token_cli, wait_for
from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, Sipp, free_port
from tests.test_gb28181_playback import SIPP, Receiver, _frames, _sipp

pytestmark = pytest.mark.slow
BEAT = {"heartbeat_s": 1.0, "offline_after_s": 3.0}


def _responses(trace: Path, cmd: str) -> list[ET.Element]:
    text = trace.read_bytes() if trace.exists() else b""
    return [
        ET.fromstring(raw.decode("gb18030"))
        for raw in re.findall(rb"<Response>.*?</Response>", text, re.S)
        if f"<CmdType>{cmd}</CmdType>".encode() in raw
    ]


def _spans(city: Any) -> list[tuple[float, float]]:
    r = city.client.get("/api/v1/tree/recordings/town-a/cam-01")
    if r.status_code != 200:
        return []
    rows = r.json()["recordings"]
    return [
        (
            datetime.fromisoformat(s["start"]).timestamp(),
            datetime.fromisoformat(s["end"]).timestamp(),
        )
        for s in rows
        if not s.get("recording")
    ]


def test_platform_downloads_a_child_gateways_recording_through_the_cascade(
    tmp_path: Path, gateway_factory: Any, sim_factory: Any
) -> None:
    platform_port, sip_port = free_port(), free_port()
    gb = {
        "upstream": [
            {
                "id": "county",
                "server_id": SERVER_ID,
                "domain": DOMAIN,
                "host": HOST,
                "port": platform_port,
                "device_id": DEVICE_ID,
                "password": "s3cret-pw",
                "local_host": HOST,
                "local_port": sip_port,
                "keepalive_s": 5,
                "civil_code": "340200",
                "catalog_page": 4,
            }
        ]
    }
    city = gateway_factory(
        {"cascade": {"level": "city", "id": "city", "name": "市", **BEAT}, "gb28181": gb},
        name="city",
    )
    sim = sim_factory(
        *("--cameras", "1", "--base", "127.0.71.1", "--size", "320x240"),
        *("--fps", "15", "--gop", "15"),
        name="tsim",
    )
    cam = sim.cameras[0]
    town_cfg = {
        "cameras": [
            {
                "id": "cam-01",
                "name": "镇口",
                "rtsp_url": f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}/main",
            }
        ],
        "recording": {"mode": "continuous", "segment_s": 2, "pre_s": 0, "post_s": 0},
        "cascade": {
            "level": "town",
            "id": "town-a",
            "name": "城关镇",
            **BEAT,
            "parent": {"url": city.base_url, "token": issue_token_cli(city, "town-a")},
        },
    }
    gateway_factory(town_cfg, name="town")
    # The town records in 2 s segments; the city lists them through the cascade.
    spans = wait_for(
        lambda: (s := _spans(city)) and s[-1][1] - s[0][0] >= 5.5 and s, 60, "5 s recorded"
    )
    first = spans[0][0]
    # The platform reads the catalog to learn the town camera's channel id.
    trace = tmp_path / "catalog.log"
    catalog = Sipp(
        "gb_platform_catalog.xml",
        tmp_path,
        *("-oocsf", str(SIPP / "gb_platform_ooc.xml")),
        *("-key", "device", DEVICE_ID, "-key", "server", SERVER_ID, "-key", "sn", "7"),
        *("-d", "600000", "-m", "1", "-trace_msg", "-message_file", str(trace)),
        f"{HOST}:{sip_port}",
        port=platform_port,
    )
    try:
        items = wait_for(
            lambda: [
                i
                for r in _responses(trace, "Catalog")
                for i in r.findall("DeviceList/Item")
                if i.findtext("Name") == "镇口"
            ],
            30,
            "the town camera in the catalog",
        )
    finally:
        catalog.stop()
    channel = items[0].findtext("DeviceID") or ""
    assert len(channel) == 20 and channel[10:13] == "132"

    media = Receiver("tcp-connect")  # TCP passive: lossless on a busy machine
    media.start()
    keys = {
        "platform_port": str(platform_port),
        "mport": str(media.port),
        "proto": "TCP/RTP/AVP",
        "setup": "a=setup:passive",
        "ssrc": "1100000003",
        "tstart": str(int(first) + 1),
        "tend": str(int(first) + 4),
        "qstart": gb_time(first - 60),
        "qend": gb_time(time.time() + 60),
    }
    sipp = _sipp("gb_platform_records_download.xml", tmp_path, sip_port, channel, keys)
    try:
        rc = sipp.wait(60)
        assert rc == 0, sipp.errors()[-3000:]
    finally:
        sipp.stop()
        media.stop()
    answers = _responses(tmp_path / "gb_platform_records_download.xml.log", "RecordInfo")
    assert answers and all(a.findtext("DeviceID") == channel for a in answers)
    items = [i for a in answers for i in a.findall("RecordList/Item")]
    assert len(items) == int(answers[0].findtext("SumNum") or 0) >= 1
    assert all(i.findtext("DeviceID") == channel for i in items)
    codec, frames = _frames(media.probe(tmp_path, 1100000003))
    # 3 s at 15 fps, from the keyframe at or before the start (GOP 1 s): 45-60 frames.
    assert codec == "h264" and 42 <= frames <= 63, frames
