"""Recorded footage plays in real headless Chromium: sim → gateway recording → playback.html.

The clip the page asks for must start where the operator clicked (the barcode burnt
into the sim's frames carries the wall-clock time, so the page reads what time it is
showing) and must keep playing (currentTime advancing, frames decoded).
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
from tests.recorder_media import random_base
from tests.support import GatewayProcess, SimProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


SHOWN = """() => {
  const v = document.getElementById("video");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(v, 0, 0);
  const r = decodeBarcode(ctx.getImageData(0, 0, c.width, c.height));
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
  return { ms: r ? r.ms : null, t: v.currentTime, ready: v.readyState, w: v.videoWidth,
           frames: q.totalVideoFrames || 0, err: v.error ? v.error.code : null };
}"""


def test_recorded_clip_plays_in_chromium_from_the_clicked_time(tmp_path: Path) -> None:
    sim = SimProcess(
        tmp_path, "--cameras", "1", "--base", random_base(), "--size", "640x360", "--gop", "25"
    )
    gw = None
    try:
        gw = GatewayProcess(
            tmp_path,
            {
                "cameras": [
                    {
                        "id": "cam-01",
                        "rtsp_url": sim.cameras[0]["rtsp_main"],
                        "recording": {"mode": "continuous", "segment_s": 4},
                    }
                ],
                "motion": {"enabled": False},
            },
        )
        deadline = time.monotonic() + 40
        while True:
            now = time.time()
            body = gw.client.get(
                "/api/v1/recordings",
                params={
                    "camera": "cam-01",
                    "start": datetime.fromtimestamp(now - 3600, UTC).isoformat(),
                    "end": datetime.fromtimestamp(now + 60, UTC).isoformat(),
                },
            ).json()
            closed = [s for s in body["segments"] if not s["recording"]]
            if len(closed) >= 3:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        # Ask for a moment inside the second segment, not on a keyframe.
        first = datetime.fromisoformat(closed[0]["start"]).timestamp()
        at = first + 5.5
        at_iso = datetime.fromtimestamp(at, UTC).isoformat()
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                if gw.token:
                    page.add_init_script(
                        f"localStorage.setItem('gw_token', {json.dumps(gw.token)})"
                    )
                page.goto(f"{gw.base_url}/playback.html?camera=cam-01&t={quote(at_iso)}")
                page.add_script_tag(path=str(BARCODE_JS))
                page.wait_for_function(
                    "() => { const v = document.getElementById('video');"
                    " return v && v.readyState >= 2 && v.currentTime > 0.5; }",
                    timeout=30000,
                )
                samples = []
                for _ in range(6):
                    samples.append(page.evaluate(SHOWN))
                    time.sleep(0.4)
                status = page.inner_text("#status")
            finally:
                browser.close()
        assert all(s["err"] is None and s["w"] == 640 for s in samples), samples
        times = [s["t"] for s in samples]
        assert times[-1] - times[0] > 1.0, samples  # playing, not stuck
        assert samples[-1]["frames"] > 25
        read = [s for s in samples if s["ms"] is not None]
        assert read, samples
        # What is on screen is the recorded moment: clip time 0 is the keyframe at or
        # before the clicked time (GOP 1 s), so shown = at - (≤1 s) + currentTime.
        for s in read:
            shown = s["ms"] / 1000.0
            assert at - 1.3 <= shown - s["t"] <= at + 0.3, (s, at)
        assert "→" in status
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
