"""Synthetic YUV pictures with known faults, for the accuracy test and the benchmark.

A clip is a list of (Picture, following Picture) samples, a camera's diagnosis
samples seen one interval apart: a few healthy ones (the reference is learnt from
them), then the fault, then healthy again. Each fault comes in day (colour) and night
(grey IR, darker, noisier) form; ``quiet`` clips carry only normal change (a person
walking, light drifting, sensor noise) and must raise nothing.
Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from gateway.diagnosis.measure import Picture, picture_from_planes

W, H = 320, 180
FAULTS = (
    "quiet",
    "occlusion",
    "blur",
    "too_dark",
    "too_bright",
    "colour_cast",
    "frozen",
    "signal_loss",
    "scene_change",
    "noise",
)
Yuv = tuple[np.ndarray, np.ndarray, np.ndarray]  # float32 planes: Y (H, W), U, V (H/2, W/2)


@dataclass
class SynthClip:
    """Samples and the kind expected during the fault (None: a quiet clip)."""

    name: str
    kind: str | None
    samples: list[tuple[Picture, Picture]]
    fault: tuple[int, int]  # sample indexes [start, end) of the fault


def scene(rng: np.random.Generator, night: bool) -> Yuv:
    """A textured outdoor-like scene: gradient, buildings, stripes, clutter."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    y = 70 + 60 * (yy / H) + 20 * np.sin(xx / rng.uniform(9, 20)) * np.cos(yy / rng.uniform(7, 15))
    for _ in range(14):
        x0, y0 = int(rng.integers(0, W - 20)), int(rng.integers(0, H - 20))
        w, h = int(rng.integers(10, 80)), int(rng.integers(10, 60))
        y[y0 : y0 + h, x0 : x0 + w] += rng.uniform(-50, 50)
    for _ in range(30):
        p0 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        p1 = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        cv2.line(y, p0, p1, float(rng.uniform(20, 230)), 1)
    u = np.full((H // 2, W // 2), 128.0, np.float32)
    v = np.full((H // 2, W // 2), 128.0, np.float32)
    if not night:
        cy, cx = np.mgrid[0 : H // 2, 0 : W // 2].astype(np.float32)
        u += rng.uniform(-8, 8) + 14 * np.sin(cx / rng.uniform(6, 14))
        v += rng.uniform(-8, 8) + 14 * np.cos(cy / rng.uniform(5, 12))
    else:
        y = 0.75 * y + 5
    return np.clip(y, 0, 255), u, v


def _noisy(planes: Yuv, rng: np.random.Generator, sigma: float) -> Picture:
    y, u, v = planes
    y = y + sigma * rng.standard_normal(y.shape, dtype=np.float32)
    return picture_from_planes(np.clip(y, 0, 255).astype(np.uint8), _u8(u), _u8(v))


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(a, 0, 255).astype(np.uint8)


def _walker(planes: Yuv, i: int, rng: np.random.Generator) -> Yuv:
    """Normal change: a person-sized object somewhere, light drifting a little."""
    y, u, v = (p.copy() for p in planes)
    x0 = int((i * 37 + rng.integers(0, W)) % (W - 20))
    y0 = int(rng.integers(H // 3, H - 45))
    y[y0 : y0 + 40, x0 : x0 + 14] = rng.uniform(20, 220)
    y *= rng.uniform(0.92, 1.08)
    return y, u, v


def faulty(kind: str, planes: Yuv, rng: np.random.Generator, night: bool) -> Yuv:
    """The scene with one fault applied."""
    y, u, v = (p.copy() for p in planes)
    if kind == "occlusion":
        fw, fh = rng.uniform(0.65, 1.0), rng.uniform(0.65, 0.9)
        x0, y0 = int(rng.uniform(0, 1 - fw) * W), int(rng.uniform(0, 1 - fh) * H)
        x1, y1 = x0 + int(fw * W), y0 + int(fh * H)
        level = rng.uniform(25, 110)
        y[y0:y1, x0:x1] = level + np.linspace(0, 8, x1 - x0)[None, :]
        u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
        v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
    elif kind == "blur":
        k = int(rng.integers(9, 15))
        y = cv2.blur(y, (k, k))
    elif kind == "too_dark":
        gain = rng.uniform(0.08, 0.18) if not night else rng.uniform(0.05, 0.12)
        y, u, v = y * gain, 128 + (u - 128) * gain * 2, 128 + (v - 128) * gain * 2
    elif kind == "too_bright":
        y = y * rng.uniform(2.6, 3.2) + 40
    elif kind == "colour_cast":
        angle = rng.uniform(0, 2 * np.pi)
        mag = rng.uniform(22, 40)
        u, v = u + mag * np.cos(angle), v + mag * np.sin(angle)
    elif kind == "scene_change":
        if rng.random() < 0.5:
            y = np.roll(y, (int(rng.integers(40, 70)), int(rng.integers(80, 160))), axis=(0, 1))
        else:
            rot = cv2.getRotationMatrix2D((W / 2, H / 2), float(rng.uniform(25, 60)), 1.3)
            y = cv2.warpAffine(y, rot, (W, H), borderMode=cv2.BORDER_REFLECT)
    return y, u, v


def signal_loss(rng: np.random.Generator) -> Yuv:
    """A flat black, blue or grey frame, sometimes with a vendor's "no video" text."""
    colour = int(rng.integers(0, 3))
    level, cu, cv = [(16, 128, 128), (41, 240, 110), (128, 128, 128)][colour]
    y = np.full((H, W), level, np.uint8)
    if rng.random() < 0.5:
        cv2.putText(y, "NO VIDEO", (W // 3, H // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 235, 2)
    return (
        y.astype(np.float32),
        np.full((H // 2, W // 2), cu, np.float32),
        np.full((H // 2, W // 2), cv, np.float32),
    )


def make_clip(kind: str, seed: int, night: bool, before: int = 4, during: int = 5) -> SynthClip:
    """A clip: ``before`` healthy samples, ``during`` faulty ones, ``before`` healthy again."""
    rng = np.random.default_rng((seed, FAULTS.index(kind), night))
    base = scene(rng, night)
    sigma = 3.0 if night else 1.5
    samples: list[tuple[Picture, Picture]] = []
    total = 2 * before + during
    frozen: tuple[Picture, Picture] | None = None
    for i in range(total):
        in_fault = kind != "quiet" and before <= i < before + during
        planes = _walker(base, i, rng)
        if not in_fault:
            samples.append((_noisy(planes, rng, sigma), _noisy(planes, rng, sigma)))
            continue
        if kind == "frozen":
            if frozen is None:
                pic = _noisy(planes, rng, sigma)
                frozen = (pic, pic)
            samples.append(frozen)
        elif kind == "signal_loss":
            flat = signal_loss(rng)
            pic = picture_from_planes(_u8(flat[0]), _u8(flat[1]), _u8(flat[2]))
            samples.append((pic, pic))
        elif kind == "noise":
            heavy = rng.uniform(12, 25)
            samples.append((_noisy(planes, rng, heavy), _noisy(planes, rng, heavy)))
        else:
            # the same fault in every sample (a cover stays where it was put)
            bad = faulty(kind, planes, np.random.default_rng((seed, 7, night)), night)
            samples.append((_noisy(bad, rng, sigma), _noisy(bad, rng, sigma)))
    name = f"{kind}-{'night' if night else 'day'}-{seed}"
    return SynthClip(name, None if kind == "quiet" else kind, samples, (before, before + during))
