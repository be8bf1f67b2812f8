"""Picture measures for the diagnosis, in numpy, on a small copy of one decoded frame.

A :class:`Picture` is the luma plane strided down to about 320 pixels wide (striding,
not averaging, keeps the per-pixel noise and the fine detail that blur removes) plus
a sparse grid of chroma samples. :func:`measure` turns a picture, the frame that
followed it (temporal noise and the "identical" test of a frozen picture), the
previous diagnosis sample and the camera's reference into plain numbers; the rules
in :mod:`gateway.diagnosis.judge` turn those into scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import av
import numpy as np

WORK_WIDTH = 320
BLOCKS = (9, 16)  # rows, columns of the block grid
CHROMA_GRID = (12, 20)  # chroma samples: rows, columns
NIGHT_SATURATION = 0.04  # chroma / luma below which a picture counts as grey (IR)
_Y_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")


@dataclass(slots=True)
class Picture:
    """A diagnosis sample: strided luma (uint8) and chroma samples (float32, or None)."""

    luma: np.ndarray
    u: np.ndarray | None
    v: np.ndarray | None


def _strided(plane: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = plane.shape
    ys = np.linspace(0, h - 1, rows).astype(np.intp)
    xs = np.linspace(0, w - 1, cols).astype(np.intp)
    return plane[np.ix_(ys, xs)].astype(np.float32)


def picture_from_planes(y: np.ndarray, u: np.ndarray | None, v: np.ndarray | None) -> Picture:
    """A sample from a luma plane and (optionally) its chroma planes, any subsampling."""
    if y.ndim != 2 or y.shape[0] < 32 or y.shape[1] < 32:
        raise ValueError(f"luma plane must be 2-D and at least 32×32, got {y.shape}")
    step = max(1, y.shape[1] // WORK_WIDTH)
    luma = np.ascontiguousarray(y[::step, ::step])
    if u is None or v is None:
        return Picture(luma, None, None)
    return Picture(luma, _strided(u, *CHROMA_GRID), _strided(v, *CHROMA_GRID))


def _plane(frame: av.VideoFrame, index: int, h: int, w: int) -> np.ndarray:
    plane = frame.planes[index]
    buf = np.frombuffer(memoryview(plane), np.uint8, count=h * plane.line_size)
    return buf.reshape(h, plane.line_size)[:, :w]


def picture_from_frame(frame: av.VideoFrame) -> Picture:
    """A sample from a decoded frame, reading its planes in place (no colour conversion)."""
    name = frame.format.name
    w, h = frame.width, frame.height
    if name in _Y_FIRST:
        cw, ch = frame.planes[1].width, frame.planes[1].height
        return picture_from_planes(
            _plane(frame, 0, h, w), _plane(frame, 1, ch, cw), _plane(frame, 2, ch, cw)
        )
    if name == "gray":
        return picture_from_planes(_plane(frame, 0, h, w), None, None)
    yuv = frame.to_ndarray(format="yuv420p")  # rare formats: convert once
    u = yuv[h : h + h // 4].reshape(h // 2, w // 2)
    v = yuv[h + h // 4 :].reshape(h // 2, w // 2)
    return picture_from_planes(yuv[:h], u, v)


@dataclass(slots=True)
class Reference:
    """What the camera's picture looked like when it was right (per day/night mode)."""

    layout: np.ndarray  # block means, zero-mean unit-norm
    contrast: np.ndarray  # block Weber contrast
    sharpness: float
    chroma: tuple[float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "layout": self.layout.round(5).tolist(),
            "contrast": self.contrast.round(5).tolist(),
            "sharpness": self.sharpness,
            "chroma": list(self.chroma) if self.chroma is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        """Raises ValueError (or KeyError/TypeError) on a malformed record."""
        layout = np.asarray(data["layout"], np.float32)
        contrast = np.asarray(data["contrast"], np.float32)
        if layout.shape != BLOCKS or contrast.shape != BLOCKS:
            raise ValueError(f"reference grid {layout.shape} is not {BLOCKS}")
        chroma = data.get("chroma")
        return cls(
            layout,
            contrast,
            float(data["sharpness"]),
            (float(chroma[0]), float(chroma[1])) if chroma else None,
        )


@dataclass(slots=True)
class Measures:
    """Plain numbers describing one sample (see :func:`measure`)."""

    mean: float
    saturated: float  # fraction of pixels ≥ 245
    dominant: float  # largest fraction of pixels within ±3 levels of one value
    dominant_level: int  # that value
    noise: float  # temporal noise sigma (levels), from the sample and the next frame
    sharpness: float  # noise-corrected Laplacian RMS per unit of contrast
    chroma: tuple[float, float] | None  # mean (U, V)
    saturation: float  # mean chroma distance from grey
    night: bool  # a grey (IR) picture
    equal_next: float  # fraction of pixels identical to the next frame
    equal_prev: float  # ... to the previous diagnosis sample (0 without one)
    flattened: float  # fraction of the reference's textured blocks that are flat now
    flat_blocks: float  # fraction of flat blocks (no reference needed)
    correlation: float  # block layout correlation with the reference (1 without one)
    cast_shift: float  # chroma shift from the reference (0 without one)
    layout: np.ndarray
    contrast: np.ndarray

    def reference(self) -> Reference:
        return Reference(self.layout, self.contrast, self.sharpness, self.chroma)


def _blocks(luma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-block mean and standard deviation on a BLOCKS grid (edges cropped)."""
    rows, cols = BLOCKS
    bh, bw = luma.shape[0] // rows, luma.shape[1] // cols
    crop = luma[: bh * rows, : bw * cols].astype(np.float32)
    tiles = crop.reshape(rows, bh, cols, bw)
    mean = tiles.mean(axis=(1, 3))
    sq = (tiles * tiles).mean(axis=(1, 3))
    return mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))


def _noise(a: np.ndarray, b: np.ndarray) -> float:
    """Temporal noise sigma: robust (median) spread of the frame difference."""
    diff = np.abs(a[::2, ::2].astype(np.int16) - b[::2, ::2].astype(np.int16))
    return float(np.median(diff)) * 1.4826 / np.sqrt(2.0)


def _saturation(pic: Picture) -> float:
    if pic.u is None or pic.v is None:
        return 0.0
    return float(np.mean(np.hypot(pic.u - 128.0, pic.v - 128.0)))


def is_night(pic: Picture) -> bool:
    """A grey picture (IR night mode, or a camera without colour): chroma near zero.

    Nearly every chroma sample must be grey, so a grey cover over part of a colour
    picture does not switch the camera to its night reference.
    """
    if pic.u is None or pic.v is None:
        return True
    grey = float(np.mean(np.hypot(pic.u - 128.0, pic.v - 128.0) < 3.0))
    return grey >= 0.9 and _saturation(pic) / (float(pic.luma.mean()) + 8.0) < NIGHT_SATURATION


def measure(
    pic: Picture, following: Picture, previous: Picture | None, ref: Reference | None
) -> Measures:
    """Measure one sample; ``following`` is the next analysed frame of the same stream."""
    y = pic.luma
    n = y.size
    hist = np.bincount(y.ravel(), minlength=256).astype(np.float64)
    mean = float(np.dot(hist, np.arange(256)) / n)
    saturated = float(hist[245:].sum() / n)
    smooth = np.convolve(hist, np.ones(7), mode="same")
    dominant_level = int(smooth.argmax())
    dominant = float(smooth[dominant_level] / n)
    noise = _noise(y, following.luma) if following.luma.shape == y.shape else 0.0

    f = y.astype(np.float32)
    lap = 4 * f[1:-1, 1:-1] - f[:-2, 1:-1] - f[2:, 1:-1] - f[1:-1, :-2] - f[1:-1, 2:]
    energy = max(float(np.mean(lap * lap)) - 20.0 * noise * noise, 0.0)
    std = float(f.std())
    sharpness = float(np.sqrt(energy)) / (std + 1.0)

    saturation = _saturation(pic)
    night = is_night(pic)
    chroma = None
    if pic.u is not None and pic.v is not None:
        chroma = (float(pic.u.mean()), float(pic.v.mean()))

    equal_next = float(np.mean(y == following.luma)) if following.luma.shape == y.shape else 0.0
    equal_prev = 0.0
    if previous is not None and previous.luma.shape == y.shape:
        equal_prev = float(np.mean(y == previous.luma))

    bmean, bstd = _blocks(y)
    clean = np.sqrt(np.maximum(bstd * bstd - noise * noise, 0.0))
    contrast = clean / (bmean + 10.0)
    flat = contrast < 0.045
    flat_blocks = float(flat.mean())
    layout = bmean - bmean.mean()
    layout /= float(np.linalg.norm(layout)) + 1e-6
    flattened, correlation, cast_shift = 0.0, 1.0, 0.0
    if ref is not None:
        textured = ref.contrast >= 0.09
        lost = flat & textured & (contrast < 0.35 * ref.contrast)
        flattened = float(lost.sum()) / max(int(textured.sum()), 1)
        correlation = float(np.dot(layout.ravel(), ref.layout.ravel()))
        if chroma is not None and ref.chroma is not None:
            cast_shift = float(np.hypot(chroma[0] - ref.chroma[0], chroma[1] - ref.chroma[1]))
    return Measures(
        mean=mean,
        saturated=saturated,
        dominant=dominant,
        dominant_level=dominant_level,
        noise=noise,
        sharpness=sharpness,
        chroma=chroma,
        saturation=saturation,
        night=night,
        equal_next=equal_next,
        equal_prev=equal_prev,
        flattened=flattened,
        flat_blocks=flat_blocks,
        correlation=correlation,
        cast_shift=cast_shift,
        layout=layout,
        contrast=contrast,
    )
