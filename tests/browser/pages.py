"""What the browser tests share: Debian's Chromium, its flags, and page probes."""

from __future__ import annotations

from tests.support import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
BARCODE_JS = ROOT / "gateway" / "web" / "js" / "barcode.js"

# Reads the barcode of the frame being shown (page with <video id="video">), with the
# wall-clock time of reading.
READ_BARCODE = """() => {
  const v = document.getElementById("video");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(v, 0, 0);
  const r = decodeBarcode(ctx.getImageData(0, 0, c.width, c.height));
  return r ? { ms: r.ms, index: r.index, now: Date.now() } : null;
}"""

# WebRTC inbound video stats of the player page (window.player).
INBOUND = """async () => {
  const pc = window.player && window.player.pc;
  if (!pc) return null;
  let out = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video")
      out = { framesDecoded: s.framesDecoded || 0, fps: s.framesPerSecond || 0 };
  });
  const v = document.getElementById("video");
  return out && { ...out, readyState: v.readyState, currentTime: v.currentTime };
}"""
