"""The frame-differencing detector on hand-made frames: zones, masks, boxes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.config import MotionSettings
from gateway.motion.detector import FrameDiffDetector, rasterise


def scene(h: int = 360, w: int = 640, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 180, (h // 8, w // 8)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8), np.uint8))


def with_block(img: np.ndarray, x: float, y: float, size: float = 0.12) -> np.ndarray:
    out = img.copy()
    h, w = out.shape
    out[int(y * h) : int((y + size) * h), int(x * w) : int((x + size) * w)] = 250
    return out


def warm(det: FrameDiffDetector, img: np.ndarray, n: int = 10) -> None:
    for _ in range(n):
        assert not det.detect(img).motion


def test_rasterise_takes_cells_whose_centre_is_inside() -> None:
    grid = rasterise([(0, 0), (0.5, 0), (0.5, 1), (0, 1)], (4, 8))
    assert grid[:, :4].all() and not grid[:, 4:].any()
    with pytest.raises(ValueError):
        rasterise([(0, 0), (1, 1)], (4, 4))


def test_moving_block_is_found_and_boxed() -> None:
    det = FrameDiffDetector(fps=5)
    img = scene()
    warm(det, img)
    result = det.detect(with_block(img, 0.5, 0.5))
    assert result.motion and result.score > 0.005
    x, y, w, h = result.boxes[0]
    assert abs(x - 0.5) < 0.04 and abs(y - 0.5) < 0.04
    assert 0.1 < w < 0.2 and 0.1 < h < 0.2


def test_works_on_strided_planes_of_any_common_size() -> None:
    for h, w in ((360, 640), (720, 1280), (1080, 1920), (576, 704), (240, 320)):
        padded = np.zeros((h, w + 64), np.uint8)
        padded[:, :w] = scene(h, w)
        plane = padded[:, :w]  # like a decoded frame with line_size > width
        det = FrameDiffDetector(fps=5)
        warm(det, plane, 3)
        moved = plane.copy()
        moved[:] = with_block(plane, 0.3, 0.3)
        assert det.detect(moved).motion, (w, h)


def test_masked_area_is_ignored() -> None:
    settings = MotionSettings(masks=[[(0.4, 0.4), (0.8, 0.4), (0.8, 0.8), (0.4, 0.8)]])
    det = FrameDiffDetector(settings)
    img = scene()
    warm(det, img)
    assert not det.detect(with_block(img, 0.5, 0.5)).motion
    assert det.detect(with_block(img, 0.1, 0.1)).motion


def test_zones_report_where_and_limit_what_counts() -> None:
    settings = MotionSettings(
        zones={
            "gate": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)],
            "road": [(0.5, 0), (1, 0), (1, 1), (0.5, 1)],
        }
    )
    det = FrameDiffDetector(settings)
    img = scene()
    warm(det, img)
    result = det.detect(with_block(img, 0.7, 0.3))
    assert result.motion and set(result.zones) == {"road"}
    only_gate = FrameDiffDetector(MotionSettings(zones={"gate": settings.zones["gate"]}))
    warm(only_gate, img)
    assert not only_gate.detect(with_block(img, 0.7, 0.3)).motion


def test_lights_switched_on_rebaseline_instead_of_firing() -> None:
    det = FrameDiffDetector(fps=5)
    img = scene()
    warm(det, img)
    bright = np.clip(img.astype(np.int32) * 3 // 2 + 30, 0, 255).astype(np.uint8)
    results = [det.detect(bright) for _ in range(10)]
    assert not any(r.motion for r in results)
    assert results[0].rebaselined and det.rebaselines == 1
    assert det.detect(with_block(bright, 0.2, 0.2)).motion  # and it still sees afterwards


def test_min_area_filters_small_changes() -> None:
    det = FrameDiffDetector(MotionSettings(min_area=0.05))
    img = scene()
    warm(det, img)
    assert not det.detect(with_block(img, 0.5, 0.5, size=0.1)).motion  # 1 % of the picture


def test_bad_input_gets_a_clear_error() -> None:
    det = FrameDiffDetector()
    with pytest.raises(ValueError, match="luma"):
        det.detect(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        det.detect(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="at least 3 items"):  # the settings model refuses
        MotionSettings(masks=[[(0, 0), (1, 1)]])
    with pytest.raises(ValueError, match="less than or equal to 1"):
        MotionSettings(zones={"gate": [(0, 0), (1.5, 0), (1, 1)]})
    with pytest.raises(ValueError, match="polygon"):  # and so does the detector, on its own
        rasterise([(0, 0), (float("nan"), 1), (1, 1)], (4, 4))


def test_resolution_change_starts_over() -> None:
    det = FrameDiffDetector()
    warm(det, scene(360, 640), 3)
    assert not det.detect(scene(720, 1280, seed=5)).motion
    assert det.geometry is not None and det.geometry.width == 1280
