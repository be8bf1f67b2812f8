"""Frame-differencing motion detection on the luma (Y) plane, in numpy.

The hot path never touches every pixel of the decoded picture: it samples a 2×2
sub-grid of each block of ``factor × factor`` pixels (four strided views, ~25 µs
whatever the input size), smooths the small picture with a 3×3 box, and compares it
with a running background. What makes it hold up outside the lab:

* **noise-adaptive threshold** – the noise level is estimated on every frame from
  the median absolute deviation (MAD) of the difference image, so sensor noise at
  night and compression artefacts raise the threshold by themselves;
* **global light compensation** – a gain (ratio of medians) and an offset (median
  of the difference) are removed before thresholding, so dusk, clouds and slow
  auto-exposure drift are not motion;
* **re-baselining** – when most of the picture changes at once (lights switched
  on, IR cut filter, exposure jump) the background is replaced by the current
  picture for a short settling time instead of firing;
* **masks and zones** – polygons in 0..1 picture coordinates, rasterised once per
  working size; masked pixels are left out of the decision *and* of the noise and
  light statistics, so a swaying tree under a mask influences nothing.

Everything after the sampling works on the small grid (160×90 cells for 16:9
pictures), in uint16 sums and float32. Connected components (OpenCV) run on the
small mask only when someone asks for the boxes (an event starts or peaks).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gateway.config import MotionSettings

Polygon = Sequence[tuple[float, float]]
Box = tuple[float, float, float, float]  # x, y, w, h in 0..1 picture coordinates

WORK_WIDTH = 160  # working width in cells; 640x360, 1280x720, 1920x1080 all give 160x90
MAX_BOXES = 8


class MotionResult:
    """What one analysed frame showed.

    ``boxes`` are worked out on first access only (connected components on the small
    mask): most frames with motion never need them, only event starts and peaks do.
    """

    __slots__ = (
        "_boxes",
        "_geometry",
        "_mask",
        "motion",
        "noise",
        "rebaselined",
        "score",
        "threshold",
        "zones",
    )

    def __init__(
        self,
        motion: bool = False,
        score: float = 0.0,
        zones: dict[str, float] | None = None,
        boxes: list[Box] | None = None,
        *,
        rebaselined: bool = False,
        noise: float = 0.0,
        threshold: float = 0.0,
    ) -> None:
        self.motion = motion
        self.score = score  # changed fraction of the watched (unmasked, in-zone) area
        self.zones = zones if zones is not None else {}  # zone -> changed fraction
        self.rebaselined = rebaselined  # a global change reset the background
        self.noise = noise  # estimated noise (grey levels, after smoothing)
        self.threshold = threshold  # grey-level difference that counted as change
        self._boxes = boxes
        self._mask: np.ndarray | None = None
        self._geometry: _Geometry | None = None

    def set_mask(self, mask: np.ndarray, geometry: _Geometry) -> None:
        self._mask, self._geometry, self._boxes = mask, geometry, None

    @property
    def boxes(self) -> list[Box]:
        """Boxes of the changed regions, largest first, (x, y, w, h) in 0..1."""
        if self._boxes is None:
            if self._mask is None or self._geometry is None:
                self._boxes = []
            else:
                self._boxes = _boxes(self._mask, self._geometry)
        return self._boxes

    def __repr__(self) -> str:
        return (
            f"MotionResult(motion={self.motion}, score={self.score:.4f}, zones={self.zones}, "
            f"rebaselined={self.rebaselined}, noise={self.noise:.2f})"
        )


class MotionDetector(ABC):
    """A motion detector: luma planes in, :class:`MotionResult` out. Not thread-safe."""

    @abstractmethod
    def detect(self, luma: np.ndarray) -> MotionResult:
        """Analyse one ``uint8`` luma plane (any stride; height × width)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the background (after a reconnect or a settings change)."""


@dataclass(frozen=True, slots=True)
class _Geometry:
    """Everything that depends only on the input size: computed once per size."""

    height: int
    width: int
    factor: int
    offsets: tuple[int, int]  # the two sampled rows/columns inside each block
    active: np.ndarray  # bool, watched cells on the smoothed grid
    everything: bool  # no masks or zones: every cell is watched
    zones: dict[str, np.ndarray]  # name -> bool cells (masks removed)
    zone_cells: dict[str, int]
    stats_index: tuple  # ~1000 active cells sampled for statistics (slices or indices)
    stats_count: int
    buffer: np.ndarray  # uint16 scratch for the sampled grid (+2 cells), reused per frame
    active_cells: int
    min_cells: int


def rasterise(polygon: Polygon, shape: tuple[int, int]) -> np.ndarray:
    """A polygon in 0..1 coordinates as a boolean grid of ``shape`` (rows, cols).

    A cell is inside when at least half of it is (measured on a 4x finer grid, since
    ``cv2.fillPoly`` alone takes every pixel the outline touches); points outside
    0..1 are clipped.
    """
    rows, cols = shape
    try:
        pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError("a polygon must be a list of (x, y) points") from None
    if len(pts) < 3 or not np.isfinite(pts).all():
        raise ValueError("a polygon needs at least three finite (x, y) points")
    pts = np.clip(pts, 0.0, 1.0)
    k, shift = 4, 8  # supersampling, and cv2's sub-pixel bits
    scaled = np.stack([pts[:, 0] * cols * k - 0.5, pts[:, 1] * rows * k - 0.5], axis=1)
    fixed = np.round(scaled * (1 << shift)).astype(np.int32)
    fine = np.zeros((rows * k, cols * k), np.uint8)
    cv2.fillPoly(fine, [fixed], 1, lineType=cv2.LINE_8, shift=shift)
    return fine.reshape(rows, k, cols, k).sum(axis=(1, 3)) >= k * k // 2


class FrameDiffDetector(MotionDetector):
    """The default detector (see the module docstring for the method).

    ``fps`` is the analysis rate; it sets the background's per-frame learning rate
    from ``background_s`` (its time constant in seconds).
    """

    def __init__(
        self,
        settings: MotionSettings | None = None,
        *,
        fps: float | None = None,
        work_width: int = WORK_WIDTH,
        background_s: float = 2.0,
        global_change: float = 0.45,
        settle_s: float = 0.6,
    ) -> None:
        self.settings = settings or MotionSettings()
        for polygon in [*self.settings.masks, *self.settings.zones.values()]:
            rasterise(polygon, (4, 4))  # fail now, with a clear message, not per frame
        fps = fps or self.settings.fps
        self.alpha = float(1.0 - math.exp(-1.0 / (fps * background_s)))
        self.work_width = work_width
        self.global_change = global_change
        self.max_gain_step = 0.08
        self.max_offset_step = 8.0
        self.settle_frames = max(1, math.ceil(settle_s * fps))
        sens = self.settings.sensitivity
        self.k_sigma = 3.0 + 4.0 * (1.0 - sens)  # 7σ at 0, 5σ at 0.5, 3σ at 1
        self.floor = 1.5 + 5.0 * (1.0 - sens)  # grey levels: 6.5 / 4 / 1.5
        self.geometry: _Geometry | None = None
        self.reset()

    def reset(self) -> None:
        self._bg: np.ndarray | None = None
        self._noise: float | None = None
        self._settle = 0
        self.frames = 0
        self.rebaselines = 0

    # -- geometry ------------------------------------------------------------
    def _geometry(self, height: int, width: int) -> _Geometry:
        g = self.geometry
        if g is not None and g.height == height and g.width == width:
            return g
        if height < 32 or width < 32:
            raise ValueError(f"picture {width}x{height} is too small for motion detection")
        factor = max(1, round(width / self.work_width))
        rows, cols = height // factor, width // factor
        # The 3x3 box smoothing drops one cell on each side: the smoothed grid is
        # cells [1:-1, 1:-1] of the sampled grid.
        shape = (rows, cols)
        keep = np.ones(shape, bool)
        for polygon in self.settings.masks:
            keep &= ~rasterise(polygon, shape)
        zones = {
            name: rasterise(poly, shape)[1:-1, 1:-1] & keep[1:-1, 1:-1]
            for name, poly in self.settings.zones.items()
        }
        active = keep[1:-1, 1:-1].copy()
        if zones:
            active &= np.logical_or.reduce(list(zones.values()))
        flat = np.flatnonzero(active)
        # About a thousand cells are plenty for medians, and cheap to partition. With
        # nothing masked a strided slice picks them (a view: no gather at all).
        if active.all():
            step = max(1, round(math.sqrt(active.size / 1000)))
            stats_index: tuple = (slice(None, None, step), slice(None, None, step))
        else:
            stats_index = np.unravel_index(flat[:: max(1, len(flat) // 1000)], active.shape)
        picture_cells = (rows - 2) * (cols - 2)
        g = _Geometry(
            height=height,
            width=width,
            factor=factor,
            offsets=(factor // 4, factor // 4 + factor // 2) if factor > 1 else (0, 0),
            active=active,
            everything=bool(active.all()),
            zones=zones,
            zone_cells={name: int(z.sum()) for name, z in zones.items()},
            stats_index=stats_index,
            stats_count=int(active[stats_index].size),
            buffer=np.zeros(rows * cols + 2, np.uint16),
            active_cells=int(active.sum()),
            min_cells=max(2, round(self.settings.min_area * picture_cells)),
        )
        self.geometry = g
        self.reset()
        return g

    # -- hot path ------------------------------------------------------------
    def _small(self, luma: np.ndarray, g: _Geometry) -> np.ndarray:
        """Sums of 36 samples per cell (2x2 sub-grid per block, then a 3x3 box), uint16.

        Four strided views pick the samples (f == 1: a == b, each pixel counted four
        times); only those ~60k bytes are read, whatever the input size.
        """
        f = g.factor
        a, b = g.offsets
        h, w = (g.height // f) * f, (g.width // f) * f
        rows, cols = h // f, w // f
        # The samples go into a flat buffer with two spare cells at the end, so the
        # 3x3 box below works on contiguous 1-D arrays (twice as fast as 2-D slices);
        # sums that wrap across a row end land in the two columns that are dropped.
        flat = g.buffer
        s = flat[: rows * cols].reshape(rows, cols)
        np.add(luma[a:h:f, a:w:f], luma[a:h:f, b:w:f], out=s, dtype=np.uint16)
        s += luma[b:h:f, a:w:f]
        s += luma[b:h:f, b:w:f]
        row = flat[:-2] + flat[1:-1]
        row += flat[2:]
        box = row[: -2 * cols] + row[cols:-cols]
        box += row[2 * cols :]
        return box.reshape(rows - 2, cols)[:, : cols - 2]

    def detect(self, luma: np.ndarray) -> MotionResult:
        if luma.ndim != 2 or luma.dtype != np.uint8:
            raise ValueError("detect() wants a 2-D uint8 luma plane")
        g = self._geometry(*luma.shape)
        cur = self._small(luma, g)  # grey levels x 36
        self.frames += 1
        bg = self._bg
        if bg is None or g.active_cells == 0 or self._settle > 0:
            # First frame, or settling after a global change: follow the picture.
            self._settle = max(0, self._settle - 1)
            self._bg = cur.astype(np.float32)
            return MotionResult(rebaselined=bg is not None)

        idx = g.stats_index
        mid = g.stats_count // 2
        bs = bg[idx]
        gain = _median(cur[idx], mid) / max(_median(bs, mid), 36.0)
        diff = cur - bg  # float32
        ds = diff[idx]  # may be a view of diff: never modified in place
        if abs(gain - 1.0) > 0.002:
            ds = ds - bs * np.float32(gain - 1.0)
        offset = _median(ds, mid)
        noise = 1.4826 * _median(np.abs(ds - offset), mid)
        # A one-frame pulse (a keyframe's new quantisation) must raise the threshold
        # at once; the smoothed level keeps a noisy night from dipping between frames.
        level = noise if self._noise is None else max(noise, self._noise)
        self._noise = noise if self._noise is None else self._noise + 0.1 * (noise - self._noise)
        threshold = max(self.floor * 36.0, self.k_sigma * level)

        # A light change too big to be the lag behind a slow drift is a switch (lamp,
        # IR filter, exposure step): compensation is never exact there (clipping,
        # tone curves), so start afresh rather than trust what it leaves.
        if abs(gain - 1.0) > self.max_gain_step or abs(offset) > self.max_offset_step * 36:
            return self._rebaseline(cur, level, threshold)

        # Background follows the scene (light compensation only removes the lag).
        bg += np.float32(self.alpha) * diff
        if abs(gain - 1.0) > 0.002:
            diff -= bg * np.float32(gain - 1.0)
        diff -= np.float32(offset)
        np.abs(diff, out=diff)
        changed = diff > np.float32(threshold)
        if not g.everything:
            changed &= g.active
        count = int(np.count_nonzero(changed))
        if count > self.global_change * g.active_cells:
            return self._rebaseline(cur, level, threshold)

        result = MotionResult(
            score=count / g.active_cells, noise=level / 36.0, threshold=threshold / 36.0
        )
        if count < g.min_cells:
            return result
        if g.zones:
            for name, zone in g.zones.items():
                hits = int(np.count_nonzero(changed & zone))
                if hits >= g.min_cells:
                    result.zones[name] = hits / max(1, g.zone_cells[name])
            if not result.zones:
                return result
        result.motion = True
        result.set_mask(changed, g)
        return result

    def _rebaseline(self, cur: np.ndarray, level: float, threshold: float) -> MotionResult:
        self._bg = cur.astype(np.float32)
        self._settle = self.settle_frames - 1
        self.rebaselines += 1
        return MotionResult(rebaselined=True, noise=level / 36.0, threshold=threshold / 36.0)


def _median(values: np.ndarray, mid: int) -> float:
    """Upper median by partition (np.median costs 7x more on a thousand values).

    ``values`` may be 2-D (a strided view): ``axis=None`` partitions it flattened.
    """
    return float(np.partition(values, mid, axis=None)[mid])


def _boxes(changed: np.ndarray, g: _Geometry) -> list[Box]:
    """Boxes of the changed regions, largest first, in 0..1 picture coordinates."""
    grown = cv2.dilate(changed.view(np.uint8), np.ones((3, 3), np.uint8))
    n, _labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    if n <= 1:
        return []
    stats = stats[1:]
    order = np.argsort(-stats[:, cv2.CC_STAT_AREA])[:MAX_BOXES]
    f = g.factor
    out: list[Box] = []
    smallest = max(2, g.min_cells // 4)
    for i in order:
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < smallest and out:
            break
        # Smoothed cell i is sampled cell i + 1, which covers pixels [(i+1)f, (i+2)f).
        out.append(
            (
                min(1.0, (x + 1) * f / g.width),
                min(1.0, (y + 1) * f / g.height),
                min(1.0, w * f / g.width),
                min(1.0, h * f / g.height),
            )
        )
    return out
