"""An H.265 recording plays on the playback page in a Chromium without an H.265 decoder.

Debian's headless Chromium has no H.265 decoder (``MediaSource.isTypeSupported`` says
no), so the page asks for ``codec=h264`` and the gateway transcodes the clip once. Real
processes: ``gateway sim --codec hevc`` (barcode in the pixels), ``gateway run``
recording it, Chromium driven by Playwright on ``playback.html``.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright import sync_api as playwright

from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_playback_chromium import SHOWN
from tests.recorder_media import random_base
from tests.support import GatewayProcess, SimProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
HEVC = 'video/mp4; codecs="hvc1.1.6.L93.B0"'


def _closed_segments(gw: GatewayProcess, n: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        body = gw.client.get(
            "/api/v1/recordings",
            params={
                "camera": "cam-h",
                "start": datetime.fromtimestamp(now - 3600, UTC).isoformat(),
                "end": datetime.fromtimestamp(now + 60, UTC).isoformat(),
            },
        ).json()
        closed = [s for s in body["segments"] if not s["recording"]]
        if len(closed) >= n:
            return closed
        assert time.monotonic() < deadline, body
        time.sleep(0.5)


def test_h265_recording_plays_as_an_h264_transcode_on_the_playback_page(tmp_path: Path) -> None:
    args = ["--cameras", "1", "--base", random_base(), "--codec", "hevc"]
    sim = SimProcess(tmp_path, *args, "--size", "640x360", "--gop", "25")
    gw = None
    try:
        gw = GatewayProcess(
            tmp_path,
            {
                "cameras": [
                    {
                        "id": "cam-h",
                        "rtsp_url": sim.cameras[0]["rtsp_main"],
                        "recording": {"mode": "continuous", "segment_s": 4},
                    }
                ],
                "motion": {"enabled": False},
            },
        )
        closed = _closed_segments(gw, 2, 60)
        assert {s["codec"] for s in closed} == {"hevc"}, closed
        at = datetime.fromisoformat(closed[0]["start"]).timestamp() + 1.5
        at_iso = datetime.fromtimestamp(at, UTC).isoformat()
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                if gw.token:
                    page.add_init_script(
                        f"localStorage.setItem('gw_token', {json.dumps(gw.token)})"
                    )
                # The premise: this browser cannot play the recording as it is.
                page.goto(f"{gw.base_url}/playback.html")
                plays_hevc = page.evaluate(f"() => MediaSource.isTypeSupported({HEVC!r})")
                assert plays_hevc is False
                clips: list[dict[str, str]] = []
                page.on(
                    "response",
                    lambda r: (
                        "clip.mp4" in r.url
                        and clips.append({"url": r.url, "status": str(r.status), **r.headers})
                    ),
                )
                page.goto(f"{gw.base_url}/playback.html?camera=cam-h&t={quote(at_iso)}")
                page.add_script_tag(path=str(BARCODE_JS))
                page.wait_for_function(
                    "() => { const v = document.getElementById('video');"
                    " return v && (v.error || (v.readyState >= 2 && v.currentTime > 0.5)); }",
                    timeout=90000,
                )
                error = page.evaluate(
                    "() => { const e = document.getElementById('video').error;"
                    " return e ? `${e.code} ${e.message}` : null; }"
                )
                if error is not None:  # say why: the clip's own answer
                    why = [gw.client.get("/" + c["url"].split("/", 3)[3]).text[:400] for c in clips]
                    raise AssertionError(f"video error {error}: {why} {clips}")
                samples = []
                for _ in range(6):
                    samples.append(page.evaluate(SHOWN))
                    time.sleep(0.4)
            finally:
                browser.close()
        assert all(s["err"] is None and s["w"] == 640 for s in samples), samples
        times = [s["t"] for s in samples]
        assert times[-1] - times[0] > 1.0, samples  # playing, not stuck
        assert any(s["ms"] is not None for s in samples), samples  # the camera's picture
        assert clips and all("codec=h264" in c["url"] for c in clips), clips
        assert any(c.get("x-clip-transcoded") == "1" for c in clips), clips
        assert {c.get("x-clip-codec") for c in clips} == {"h264"}, clips
        clip_cache = gw.client.get("/api/v1/recordings/status").json()["clips"]
        assert clip_cache["transcodes"] >= 1, clip_cache
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
