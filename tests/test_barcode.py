"""The sim's wall-clock barcode survives real H.264 and scaling, in Python and in JS."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gateway.sim import barcode
from gateway.sim.source import Scene
from tests.support import ROOT

JS = ROOT / "gateway" / "web" / "js" / "barcode.js"
CHROMIUM = "/usr/bin/chromium"


def _h264_round_trip(frames: list[np.ndarray], w: int, h: int, kbps: int) -> list[np.ndarray]:
    """Encode I420 frames with libx264 and decode them back to luma planes."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.bit_rate = kbps * 1000
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    dec = av.CodecContext.create("h264", "r")
    out = []
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = i
        for pkt in enc.encode(frame):
            out += [f.to_ndarray(format="gray") for f in dec.decode(pkt)]
    for pkt in enc.encode(None):
        out += [f.to_ndarray(format="gray") for f in dec.decode(pkt)]
    return out


def test_round_trip_on_plain_arrays() -> None:
    for shape in ((180, 320), (720, 1280, 3), (360, 640, 4)):
        img = np.full(shape, 128, np.uint8)
        ms, index = 1_795_000_000_123, 4321
        barcode.encode(img, ms, index)
        assert barcode.decode(img) == (ms, index)


def test_corrupted_code_is_rejected() -> None:
    img = np.full((360, 640), 128, np.uint8)
    barcode.encode(img, 1_795_000_000_000, 7)
    xs, ys = barcode.cell_edges(640, 360)
    cell = img[ys[0] : ys[1], xs[10] : xs[11]]
    cell[:] = 251 - cell  # flip one data bit: the CRC must catch it
    assert barcode.decode(img) is None
    assert barcode.decode(np.full((360, 640), 128, np.uint8)) is None
    assert barcode.decode(np.zeros((8, 8), np.uint8)) is None


def test_strip_stays_in_top_8_percent() -> None:
    for w, h in ((1280, 720), (640, 360), (320, 180), (1920, 1080)):
        sw, sh = barcode.strip_size(w, h)
        assert sh <= h * barcode.STRIP_HEIGHT_FRACTION
        assert sw <= w


@pytest.mark.parametrize(("w", "h", "kbps"), [(1280, 720, 1500), (320, 180, 150)])
def test_survives_h264_and_scaling(w: int, h: int, kbps: int) -> None:
    scene = Scene(3, "cam-03")
    t0 = 1_795_000_000.0
    frames = [scene.render(w, h, t0 + i / 25, i, motion=True) for i in range(30)]
    decoded = _h264_round_trip(frames, w, h, kbps)
    assert len(decoded) == 30
    for i, y in enumerate(decoded):
        assert barcode.decode(y) == (int((t0 + i / 25) * 1000), 3), f"frame {i}"
    # scaled to other sizes, as a browser tile or a transcoder would
    last = decoded[-1]
    want = (int((t0 + 29 / 25) * 1000), 3)
    for sw, sh in ((w // 2, h // 2), (w * 3 // 2, h * 3 // 2), (854, 480)):
        scaled = cv2.resize(last, (sw, sh), interpolation=cv2.INTER_AREA)
        assert barcode.decode(scaled) == want, f"{w}x{h} scaled to {sw}x{sh}"


def test_js_decoder_matches_python_on_rgba(tmp_path) -> None:
    """barcode.js decodes the RGBA of a real H.264-decoded frame like the Python decoder."""
    scene = Scene(12, "cam-12")
    now = time.time()
    i420 = [scene.render(640, 360, now + i / 25, i, motion=False) for i in range(5)]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 640, 360, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    dec = av.CodecContext.create("h264", "r")
    rgba = None
    for i, img in enumerate(i420):
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        frame.pts = i
        for pkt in list(enc.encode(frame)) + (list(enc.encode(None)) if i == 4 else []):
            for f in dec.decode(pkt):
                rgba = f.to_ndarray(format="rgba")
    assert rgba is not None
    want = barcode.decode(rgba)
    assert want is not None and want[1] == 12
    cases = {"good": rgba, "half": cv2.resize(rgba, (320, 180), interpolation=cv2.INTER_AREA)}
    bad = rgba.copy()
    bad[: bad.shape[0] // 10] = 128
    cases["blank"] = bad
    for name, arr in cases.items():
        (tmp_path / f"{name}.rgba").write_bytes(np.ascontiguousarray(arr).tobytes())
    script = f"""
const fs = require("fs");
const {{ decodeBarcode }} = require({json.dumps(str(JS))});
const out = {{}};
for (const [name, w, h] of [["good", 640, 360], ["half", 320, 180], ["blank", 640, 360]]) {{
  const file = {json.dumps(str(tmp_path))} + "/" + name + ".rgba";
  const data = new Uint8ClampedArray(fs.readFileSync(file));
  out[name] = decodeBarcode({{ width: w, height: h, data }});
}}
console.log(JSON.stringify(out));
"""
    res = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["good"] == {"ms": want[0], "index": 12}
    assert got["half"] == {"ms": want[0], "index": 12}
    assert got["blank"] is None


def _mp4(path, index: int, t0: float, n: int = 25) -> list[int]:
    """An H.264 MP4 of the sim's scene; returns the barcode ms of each frame."""
    scene = Scene(index, f"cam-{index:02d}")
    stamps = []
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(n):
            now = t0 + i / 25
            stamps.append(int(now * 1000))
            frame = av.VideoFrame.from_ndarray(scene.render(640, 360, now, i, False), "yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return stamps


@pytest.mark.browser
def test_js_decoder_in_chromium_reads_a_real_h264_video(tmp_path) -> None:
    """Chromium decodes H.264, draws it to a canvas, and barcode.js reads the right code."""
    from playwright import sync_api as playwright

    assert Path(CHROMIUM).exists(), f"no {CHROMIUM}: run scripts/setup --system"
    stamps = _mp4(tmp_path / "v.mp4", 9, 1_795_000_000.0)
    src = "data:video/mp4;base64," + base64.b64encode((tmp_path / "v.mp4").read_bytes()).decode()
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-sync",
            "--autoplay-policy=no-user-gesture-required"]  # fmt: skip
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page()
            page.set_content("<video muted playsinline></video><canvas></canvas>")
            page.add_script_tag(path=str(JS))
            got = page.evaluate(
                """async (src) => {
                  const v = document.querySelector("video");
                  v.src = src;
                  await new Promise((ok, bad) => { v.onloadeddata = ok; v.onerror = bad; });
                  const out = [];
                  for (const t of [0.0, 0.42, 0.81]) {
                    v.currentTime = t;
                    await new Promise((ok) => { v.onseeked = ok; });
                    const c = document.querySelector("canvas");
                    c.width = v.videoWidth; c.height = v.videoHeight;
                    const ctx = c.getContext("2d", { willReadFrequently: true });
                    ctx.drawImage(v, 0, 0);
                    out.push(decodeBarcode(ctx.getImageData(0, 0, c.width, c.height)));
                    c.width = 320; c.height = 180;  // a small tile of the video wall
                    ctx.drawImage(v, 0, 0, 320, 180);
                    out.push(decodeBarcode(ctx.getImageData(0, 0, 320, 180)));
                    out.push(decodeVideoBarcode(v));  // the helper tests use on live video
                  }
                  return out;
                }""",
                src,
            )
        finally:
            browser.close()
    assert all(r is not None and r["index"] == 9 for r in got), got
    assert all(r["ms"] in stamps for r in got), (got, stamps)
    assert len({r["ms"] for r in got}) == 3  # three different frames were read
    lag = [r["latencyMs"] for r in got[2::3]]
    assert all(abs(x - (time.time() * 1000 - got[2]["ms"])) < 60_000 for x in lag), lag
