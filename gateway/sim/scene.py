"""The simulated camera's picture, drawn in numpy as I420 at any size.

A per-camera coloured gradient with stripes and the camera id, mild sensor
noise, the barcode (:mod:`gateway.sim.barcode`) and a small ticker, both inside
the top 8 % of the height, and, while ``camera.motion`` is on, a bright box
sweeping across the middle band (``MOTION_BAND``). Without motion and PTZ
movement nothing below the top 8 % changes but the noise. ``camera.ptz`` moves
the view: pan and tilt scroll the scene, zoom magnifies its centre.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import cv2
import numpy as np

from gateway.sim import barcode

MOTION_BAND = (0.40, 0.70)  # fraction of the height the moving box occupies
MOTION_PERIOD_S = 4.0  # one sweep left→right→left
NOISE_VARIANTS = 4


class Scene:
    """Renders one camera's picture (I420, shape (H*3/2, W)) at any size."""

    def __init__(self, index: int, label: str, look: int | None = None) -> None:
        self.index = index  # also burnt into the barcode: tests read it back
        self.label = label
        self.look = index if look is None else look  # colours and stripes
        self._backgrounds: dict[tuple[int, int], list[np.ndarray]] = {}  # (w, h) → variants
        self._lock = threading.Lock()
        hue = (self.look * 137.508) % 360  # golden angle: neighbours look different
        self._u = 128 + 48 * np.cos(np.radians(hue))
        self._v = 128 + 48 * np.sin(np.radians(hue))

    def _background(self, w: int, h: int, variant: int) -> np.ndarray:
        """Noise variant ``variant`` of the still scene, built on first use.

        Variant 0 is the clean scene (all that snapshots need: one buffer per size);
        the others add ±2 levels of fixed noise below the strip, so a played stream
        shows sensor noise without paying for random numbers every frame.
        """
        with self._lock:
            variants = self._backgrounds.setdefault((w, h), [])
            if not variants:
                variants.append(self._make_background(w, h))
            while len(variants) <= variant:
                variants.append(self._add_noise(variants[0], w, h, len(variants)))
            return variants[variant]

    def _make_background(self, w: int, h: int) -> np.ndarray:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        luma = 60 + 120 * (xx / max(w - 1, 1)) * 0.6 + 120 * (yy / max(h - 1, 1)) * 0.4
        angle = np.radians(15 + 23 * self.look)
        period = max(w, h) / (6 + self.look % 5)
        stripes = 18 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
        buf = np.empty((h * 3 // 2, w), np.uint8)
        y, u, v = _planes(buf, w, h)
        y[:] = np.clip(luma + stripes, 16, 235)
        scale = h / 240
        cv2.putText(
            y,
            self.label,
            (int(w * 0.04), int(h * 0.92)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            235,
            max(1, int(scale * 2)),
            cv2.LINE_AA,
        )
        cw, ch = w // 2, h // 2
        cyy, cxx = np.mgrid[0:ch, 0:cw].astype(np.float32)
        u[:] = np.clip(self._u + 20 * (cxx / max(cw - 1, 1) - 0.5), 16, 240)
        v[:] = np.clip(self._v + 20 * (cyy / max(ch - 1, 1) - 0.5), 16, 240)
        top = _strip_rows(h)
        y[:top] = 40
        u[: (top + 1) // 2] = 128
        v[: (top + 1) // 2] = 128
        return buf

    def _add_noise(self, clean: np.ndarray, w: int, h: int, seed: int) -> np.ndarray:
        top = _strip_rows(h)
        rng = np.random.default_rng((self.index, w, h, seed))
        buf = clean.copy()
        noisy = clean[top:h].astype(np.int16)
        noisy += rng.integers(-2, 3, size=noisy.shape, dtype=np.int16)
        buf[top:h] = np.clip(noisy, 16, 235)
        return buf

    def render(
        self,
        w: int,
        h: int,
        now: float,
        frame_no: int,
        motion: bool,
        ptz: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """The picture at wall time ``now`` (barcode = ``now`` in ms).

        ``ptz`` (``camera.ptz``: pan/tilt in -1..1, zoom in 0..1) moves the view of
        the scene below the strip, so PTZ commands visibly change the picture.
        """
        if w % 2 or h % 2 or w < 16 or h < 16:
            raise ValueError(f"frame size must be even and at least 16×16, got {w}×{h}")
        background = self._background(w, h, frame_no % NOISE_VARIANTS)
        pan, tilt, zoom = _view(ptz)
        if pan or tilt or zoom:
            buf = self._moved_view(background, w, h, pan, tilt, zoom)
        else:
            buf = background.copy()
        yplane = buf[:h]
        # ticker: a block sweeping the strip's right part, so the video is never frozen
        x0, x1 = int(w * 0.86), int(w * 0.99)
        bw = max(2, (x1 - x0) // 6)
        pos = x0 + int(((now % 2.0) / 2.0) * (x1 - x0 - bw))
        yplane[int(h * 0.01) : int(h * 0.06), pos : pos + bw] = 235
        barcode.encode(yplane, int(now * 1000), self.index)
        if motion:
            self._draw_motion(buf, w, h, now)
        return buf

    def _moved_view(
        self, background: np.ndarray, w: int, h: int, pan: float, tilt: float, zoom: float
    ) -> np.ndarray:
        top = _strip_rows(h)
        # pan and tilt scroll the scene (wrapping), zoom crops its centre and scales up
        dx, dy = int(-pan * w / 2) & ~1, int(tilt * (h - top) / 2) & ~1
        buf = background.copy()
        for i, (src, dst) in enumerate(
            zip(_planes(background, w, h), _planes(buf, w, h), strict=True)
        ):
            sub = 2 if i else 1  # chroma planes are half size
            region = np.roll(src[top // sub :], (dy // sub, dx // sub), axis=(0, 1))
            if zoom:
                rh, rw = region.shape
                kh, kw = max(2, int(rh * (1 - 0.6 * zoom))), max(2, int(rw * (1 - 0.6 * zoom)))
                y0, x0 = (rh - kh) // 2, (rw - kw) // 2
                crop = region[y0 : y0 + kh, x0 : x0 + kw]
                region = cv2.resize(crop, (rw, rh), interpolation=cv2.INTER_LINEAR)
            dst[top // sub :] = region
        return buf

    def _draw_motion(self, buf: np.ndarray, w: int, h: int, now: float) -> None:
        phase = (now % MOTION_PERIOD_S) / MOTION_PERIOD_S
        tri = 1 - abs(2 * phase - 1)  # 0→1→0
        bw, y0, y1 = int(w * 0.14) & ~1, int(h * MOTION_BAND[0]) & ~1, int(h * MOTION_BAND[1]) & ~1
        x0 = (int(w * 0.04) + int(tri * (w * 0.92 - bw))) & ~1
        buf[y0:y1, x0 : x0 + bw] = 235
        buf[y0 + 4 : y1 - 4, x0 + 4 : x0 + bw - 4] = 200
        _, u, v = _planes(buf, w, h)
        u[y0 // 2 : y1 // 2, x0 // 2 : (x0 + bw) // 2] = 80
        v[y0 // 2 : y1 // 2, x0 // 2 : (x0 + bw) // 2] = 220

    def jpeg(
        self, w: int, h: int, motion: bool, ptz: dict[str, Any] | None = None, quality: int = 85
    ) -> bytes:
        """One picture of now as JPEG."""
        i420 = self.render(w, h, time.time(), 0, motion, ptz)
        bgr = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return data.tobytes()


def _planes(buf: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, U and V views into an I420 buffer of shape (h*3/2, w)."""
    cw, ch = w // 2, h // 2
    flat = buf[h:].reshape(-1)
    return buf[:h], flat[: cw * ch].reshape(ch, cw), flat[cw * ch :].reshape(ch, cw)


def _view(ptz: dict[str, Any] | None) -> tuple[float, float, float]:
    if not ptz:
        return 0.0, 0.0, 0.0
    try:
        pan = max(-1.0, min(1.0, float(ptz.get("pan", 0.0))))
        tilt = max(-1.0, min(1.0, float(ptz.get("tilt", 0.0))))
        zoom = max(0.0, min(1.0, float(ptz.get("zoom", 0.0))))
    except (TypeError, ValueError):
        return 0.0, 0.0, 0.0
    # below a pixel's worth the view does not move: keep the cheap path
    return (pan if abs(pan) > 1e-3 else 0.0, tilt if abs(tilt) > 1e-3 else 0.0,
            zoom if zoom > 1e-3 else 0.0)  # fmt: skip


def _strip_rows(h: int) -> int:
    return int(h * barcode.STRIP_HEIGHT_FRACTION) & ~1


def picture_fault(buf: np.ndarray, w: int, h: int, mode: str) -> np.ndarray:
    """Apply a picture fault (``SimCamera.picture``) to a rendered I420 picture, in place.

    "cover": something held over most of the lens (a flat dark patch over the scene
    below the strip, which stays: the OSD is drawn after the lens); "black"/"blue":
    the flat screens of a lost signal; "dark": the light gone (gain 0.1). "freeze" is
    the encoder's business (it repeats its last picture).
    """
    y, u, v = _planes(buf, w, h)
    top = _strip_rows(h)
    if mode == "cover":
        x1 = int(w * 0.85) & ~1
        y[top:, :x1] = 52
        u[top // 2 :, : x1 // 2] = 128
        v[top // 2 :, : x1 // 2] = 128
    elif mode in ("black", "blue"):
        level, cu, cv = (16, 128, 128) if mode == "black" else (41, 240, 110)
        y[:], u[:], v[:] = level, cu, cv
    elif mode == "dark":
        y[:] = (y.astype(np.uint16) // 10).astype(np.uint8)
        u[:] = 128 + (u.astype(np.int16) - 128) // 5
        v[:] = 128 + (v.astype(np.int16) - 128) // 5
    return buf
