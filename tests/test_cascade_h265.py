"""A village's H.265 camera at the city's video wall: H.265 untouched when the viewer offers
it, else the camera's own H.264 sub-stream, else the transcode made at the village.

Real processes on loopback: two ``gateway sim`` cameras (H.265 main, H.264 sub), the city,
town and village gateways joined by the cascade, and GStreamer's webrtcbin as the WHEP
viewer at the city (``tests/gst_whep_client.py``; it decodes with ``avdec_h265`` /
``avdec_h264`` and the test reads the simulator's barcode from the pictures).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cascade_support import all_cameras, start_levels, wait_for
from tests.test_clip_h264 import probe
from tests.test_whep_gstreamer import Rig, _check_picture

pytestmark = pytest.mark.slow
REMOTE = "town-a/village-1"


def _streams(gw: Any) -> list[dict[str, Any]]:
    return gw.client.get("/api/v1/streams").json()["streams"]


def _keys(gw: Any) -> set[str]:
    return {s["key"] for s in _streams(gw)}


def _check_h264_clip_through_the_tree(lv: Any, tmp: Path) -> None:
    """The city's playback of the village's H.265 recording, as H.264 for Chromium."""

    def finished() -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        params = {
            "camera": "cam-265",
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(minutes=1)).isoformat(),
        }
        body = lv.village.client.get("/api/v1/recordings", params=params).json()
        return [s for s in body["segments"] if not s["recording"]]

    segments = wait_for(finished, 60, "a finished segment of cam-265 at the village", every=0.5)
    seg = segments[0]
    start = datetime.fromisoformat(seg["start"])
    span = {"start": seg["start"], "end": (start + timedelta(seconds=3)).isoformat()}
    url = f"/api/v1/tree/recordings/{REMOTE}/cam-265/clip.mp4"
    for codec, params in (("hevc", span), ("h264", {**span, "codec": "h264"})):
        r = lv.city.client.get(url, params=params, timeout=120)
        assert r.status_code == 200, r.text
        path = tmp / f"tree-clip-{codec}.mp4"
        path.write_bytes(r.content)
        info = probe(path)
        assert info["codec_name"] == codec, info
        assert 2.0 <= float(info["duration"]) <= 4.5, info


def test_village_h265_camera_reaches_the_city_as_h265_or_its_h264_sub_stream(
    gateway_factory: Any, tmp_path: Path
) -> None:
    rig = Rig(tmp_path)
    try:
        (h264,) = rig.sim("127.0.73.1", "h264", "sim-h264")
        # Each H.265 camera its own encoder (camera i draws index i).
        hevc, hevc2 = rig.sim("127.0.74.1", "hevc", "sim-h265", cameras=2)
        cameras = [
            # H.265 main stream, H.264 sub-stream, as many cameras ship.
            {
                "id": "cam-265s",
                "rtsp_url": f"{hevc['url']}/main",
                "sub_rtsp_url": f"{h264['url']}/sub",
            },
            {  # no sub-stream; recorded as it comes (H.265)
                "id": "cam-265",
                "rtsp_url": f"{hevc2['url']}/main",
                "recording": {"mode": "continuous", "segment_s": 4},
            },
        ]
        relay = {"interfaces": ["127.0.0.1"], "source_wait_s": 15}
        lv = start_levels(
            gateway_factory,
            village_extra={"cameras": cameras, "motion": {"enabled": False}},
            city_extra={"relay": relay, "motion": {"enabled": False}},
        )
        wanted = {f"{REMOTE}/cam-265s", f"{REMOTE}/cam-265"}
        wait_for(
            lambda: wanted <= set(all_cameras(lv.city.client.get("/api/v1/tree").json())),
            30,
            "the village cameras in the city's tree",
        )
        rig.gw = lv.city
        # Three viewers at the city at once.
        h265 = rig.start(f"{REMOTE}/cam-265s", "H265,H264")
        sub = rig.start(f"{REMOTE}/cam-265s", "H264")
        transcode = rig.start(f"{REMOTE}/cam-265", "H264")
        plays = {"h265": h265(), "sub": sub(), "transcode": transcode()}
        seen = [(s["key"], s["codec"], s["has_b_frames"]) for s in _streams(lv.city)]
        for name, play in plays.items():
            assert play.rc == 0 and play.frames >= 40, (name, play.done, play.log)
        _check_picture(plays["h265"], 1)
        _check_picture(plays["transcode"], 2)
        _check_picture(plays["sub"], 1)
        assert plays["h265"].answer_codec().upper() == "H265/90000", (plays["h265"].served, seen)
        assert plays["h265"].done["codec"] == "H265"
        assert plays["h265"].served == {"variant": "main", "codec": "h265"}
        assert plays["sub"].answer_codec().upper() == "H264/90000"
        assert plays["sub"].served == {"variant": "sub", "codec": "h264"}
        assert plays["transcode"].answer_codec().upper() == "H264/90000"
        assert plays["transcode"].served == {"variant": "h264", "codec": "h264"}
        # Nothing decodes at the city or the town: H.265 crossed both hops untouched, and
        # the one transcode (the camera without a sub-stream) runs at the village.
        village = _keys(lv.village)
        assert "cam-265/main@h264" in village, village
        assert not any(k.startswith("cam-265s/main@") for k in village), village
        for level in (lv.city, lv.town):
            kinds = {s["key"]: s["source"]["source"] for s in _streams(level)}
            assert kinds and set(kinds.values()) == {"cascade"}, kinds
        main = {s["key"]: s["codec"] for s in _streams(lv.city)}
        assert main[f"{REMOTE}/cam-265s/main"] == "hevc", main
        _check_h264_clip_through_the_tree(lv, tmp_path)
    finally:
        for sim in rig.sims:
            sim.stop()
