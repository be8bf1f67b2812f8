"""Synthetic luma clips with known ground truth, for accuracy tests and benchmarks.

Each clip is a textured static scene with moving objects during known intervals,
and one nuisance: sensor noise, H.264 compression at a low bitrate (really encoded
and decoded with PyAV), a dusk light ramp, sudden light changes (lights on/off, IR
switch), or a swaying region (a tree) under a mask. ``quiet`` variants have the
nuisance and no object: any event on them is a false alarm.

Deterministic for a given seed. Frames are generated lazily (a clip is ~40 s).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext

from gateway.config import MotionSettings
from gateway.media.avcodec import video_context

Interval = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Mover:
    """An object crossing the picture from ``t0`` to ``t1`` (fully out of view outside)."""

    t0: float
    t1: float
    y: float  # centre row, 0..1
    w: float  # size as picture fractions
    h: float
    contrast: float  # grey levels added to the scene (sign matters)
    leftwards: bool = False

    def box_at(self, t: float) -> tuple[float, float, float, float] | None:
        """Where the object is at ``t``: (x, y, w, h) in 0..1, clipped; None if out of view."""
        if not self.t0 <= t < self.t1:
            return None
        frac = (t - self.t0) / (self.t1 - self.t0)
        x = -self.w + frac * (1 + self.w)
        if self.leftwards:
            x = 1 - self.w - x
        x0, x1 = max(0.0, x), min(1.0, x + self.w)
        y0, y1 = max(0.0, self.y - self.h / 2), min(1.0, self.y + self.h / 2)
        return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 else None


@dataclass
class Clip:
    """A generated clip: frames (t, luma) at ``fps`` analysed frames a second."""

    name: str
    duration: float
    movers: list[Mover]
    settings: MotionSettings = field(default_factory=MotionSettings)
    fps: float = 5.0
    size: tuple[int, int] = (640, 360)
    noise: float = 3.0
    noise_ramp: Callable[[float], float] | None = None  # t -> noise multiplier (gain up)
    light: Callable[[float], tuple[float, float]] | None = None  # t -> (gain, offset)
    gamma: Callable[[float], float] | None = None  # t -> gamma (IR switch)
    sway: tuple[float, float, float, float] | None = None  # x, y, w, h of a swaying tree
    h264_kbps: int | None = None  # encode/decode at this bitrate (25 fps source)
    seed: int = 1

    @property
    def truth(self) -> list[Interval]:
        return [(m.t0, m.t1) for m in self.movers]

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """(time in s, uint8 luma) at the analysis rate."""
        if self.h264_kbps is None:
            yield from self._raw(self.fps)
            return
        step = max(1, round(25 / self.fps))
        for i, (t, y) in enumerate(_h264_roundtrip(self._raw(25.0), self.size, self.h264_kbps)):
            if i % step == 0:
                yield t, y

    def _raw(self, fps: float) -> Iterator[tuple[float, np.ndarray]]:
        w, h = self.size
        rng = np.random.default_rng(self.seed)
        scene = _scene(w, h, rng)
        bank = [rng.normal(0, self.noise, (h, w)).astype(np.float32) for _ in range(8)]
        textures = [_texture(rng, 64, 64) for _ in self.movers]
        tree = _texture(rng, 256, 256, scale=6.0) * 70 if self.sway else None
        for i in range(int(self.duration * fps)):
            t = i / fps
            img = scene.copy()
            for mover, tex in zip(self.movers, textures, strict=True):
                _paint_mover(img, mover, tex, t)
            if tree is not None and self.sway:
                _paint_sway(img, tree, self.sway, t)
            if self.light:
                gain, offset = self.light(t)
                img = img * gain + offset
            if self.gamma:
                img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** self.gamma(t)
            noise = np.roll(bank[i % 8], int(rng.integers(0, w)), axis=1)
            if self.noise_ramp:
                noise *= self.noise_ramp(t)
            img += noise
            yield t, np.clip(img, 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator, w: int, h: int, scale: float = 3.0) -> np.ndarray:
    """Smooth random texture in -1..1."""
    small = rng.uniform(-1, 1, (max(2, int(h / scale / 4)), max(2, int(w / scale / 4))))
    tex = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(tex, -1, 1)


def _scene(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A static street-like scene: gradient sky, textured ground, hard-edged blocks."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 90 + 60 * (1 - yy / h) + 15 * np.sin(xx / 37.0)
    img += 25 * _texture(rng, w, h, scale=2.0)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
        bw, bh = int(rng.integers(15, 120)), int(rng.integers(15, 100))
        img[y0 : y0 + bh, x0 : x0 + bw] += float(rng.uniform(-40, 40))
    return np.clip(img, 10, 245).astype(np.float32)


def _paint_mover(img: np.ndarray, m: Mover, tex: np.ndarray, t: float) -> None:
    if not m.t0 <= t < m.t1:
        return
    h, w = img.shape
    ow, oh = max(2, int(m.w * w)), max(2, int(m.h * h))
    frac = (t - m.t0) / (m.t1 - m.t0)
    # Enters with its leading edge at the border at t0; its trailing edge leaves at t1.
    x = -ow + frac * (w + ow)
    if m.leftwards:
        x = w - ow - x
    x0, y0 = round(x), round(m.y * h - oh / 2)
    xa, xb = max(0, x0), min(w, x0 + ow)
    ya, yb = max(0, y0), min(h, y0 + oh)
    if xa >= xb or ya >= yb:
        return
    body = cv2.resize(tex, (ow, oh)) * 0.25 + 1.0  # textured, mostly of one sign
    img[ya:yb, xa:xb] += m.contrast * body[ya - y0 : yb - y0, xa - x0 : xb - x0]


def _paint_sway(img: np.ndarray, tree: np.ndarray, box: tuple, t: float) -> None:
    """A tree crown swinging sideways with a 1.7 s period, replacing the scene in ``box``."""
    h, w = img.shape
    x0, y0 = int(box[0] * w), int(box[1] * h)
    bw, bh = int(box[2] * w), int(box[3] * h)
    dx = round(12 * math.sin(2 * math.pi * t / 1.7))
    crop = cv2.resize(tree, (bw + 40, bh))[:, 20 + dx : 20 + dx + bw]
    img[y0 : y0 + bh, x0 : x0 + bw] = 100 + crop


def _h264_roundtrip(
    frames: Iterator[tuple[float, np.ndarray]], size: tuple[int, int], kbps: int
) -> Iterator[tuple[float, np.ndarray]]:
    """Encode with libx264 at ``kbps`` (GOP 50, no B-frames, like a camera) and decode."""
    w, h = size
    enc = video_context("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 25)
    enc.framerate = Fraction(25, 1)
    enc.bit_rate = kbps * 1000
    enc.gop_size = 50
    enc.max_b_frames = 0
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    dec = video_context("h264", "r")
    chroma = np.full((h // 2, w // 2), 128, np.uint8)
    times: list[float] = []
    for i, (t, y) in enumerate(frames):
        frame = av.VideoFrame(w, h, "yuv420p")
        frame.planes[0].update(_pad(y, frame.planes[0].line_size))
        for p in (1, 2):
            frame.planes[p].update(_pad(chroma, frame.planes[p].line_size))
        frame.pts = i
        times.append(t)
        for packet in enc.encode(frame):
            yield from _decoded(dec, packet, times)
    for packet in enc.encode(None):
        yield from _decoded(dec, packet, times)


def _pad(plane: np.ndarray, line_size: int) -> bytes:
    if plane.shape[1] == line_size:
        return plane.tobytes()
    out = np.zeros((plane.shape[0], line_size), np.uint8)
    out[:, : plane.shape[1]] = plane
    return out.tobytes()


def _decoded(
    dec: VideoCodecContext, packet: av.Packet, times: list[float]
) -> Iterator[tuple[float, np.ndarray]]:
    for frame in dec.decode(av.Packet(bytes(packet))):
        plane = frame.planes[0]
        y = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
        yield times.pop(0), y[:, : frame.width].copy()


# -- the catalogue ---------------------------------------------------------------


def _movers(
    rng: np.random.Generator, start: float, count: int, contrast: float, size: float = 1.0
) -> list[Mover]:
    """``count`` crossings of 2.5-5 s separated by 9-12 s of calm."""
    out, t = [], start
    for i in range(count):
        dur = float(rng.uniform(2.5, 5.0))
        sign = 1 if i % 2 == 0 else -1
        out.append(
            Mover(
                t0=round(t, 2),
                t1=round(t + dur, 2),
                y=float(rng.uniform(0.35, 0.8)),
                w=size * float(rng.uniform(0.04, 0.09)),
                h=size * float(rng.uniform(0.12, 0.3)),
                contrast=sign * float(rng.uniform(contrast, contrast * 1.6)),
                leftwards=bool(i % 3 == 1),
            )
        )
        t += dur + float(rng.uniform(9.0, 12.0))
    return out


def _lights(t: float) -> tuple[float, float]:
    """Lights switched on at 6 s, off at 30 s, auto-exposure jump at 52 s."""
    if 6 <= t < 30:
        return 1.45, 25.0
    if t >= 52:
        return 0.7, -5.0
    return 1.0, 0.0


def _ir(t: float) -> float:
    """IR cut filter switching at 18 s and back at 44 s: a different tone curve."""
    return 0.6 if 18 <= t < 44 else 1.0


def _dusk(t: float) -> tuple[float, float]:
    """Daylight to dusk in 50 s: gain 1 → 0.3, with a falling offset."""
    k = min(1.0, t / 50.0)
    return 1.0 - 0.7 * k, -8.0 * k


def _dusk_noise(t: float) -> float:
    """The camera turns its gain up as the light goes: noise x1 → x2.5."""
    return 1.0 + 1.5 * min(1.0, t / 50.0)


TREE = (0.02, 0.05, 0.28, 0.4)  # x, y, w, h of the swaying tree crown
TREE_MASK = [(0.0, 0.0), (0.32, 0.0), (0.32, 0.48), (0.0, 0.48)]


def catalogue(seed: int = 7, *, quick: bool = False) -> list[Clip]:
    """The accuracy clips: each nuisance with objects, and without (``*-quiet``)."""
    rng = np.random.default_rng(seed)
    n = 3 if quick else 4
    masked = MotionSettings(masks=[TREE_MASK])
    clips: list[Clip] = []
    # name, clip arguments, object contrast (grey levels), object size (x)
    kinds: list[tuple[str, dict, float, float]] = [
        ("noise", {"noise": 10.0}, 28.0, 1.0),
        ("small", {"noise": 5.0}, 30.0, 0.6),
        ("h264", {"noise": 4.0, "h264_kbps": 150}, 25.0, 1.0),
        ("dusk", {"noise": 4.0, "light": _dusk, "noise_ramp": _dusk_noise}, 28.0, 1.0),
        ("lights", {"noise": 4.0, "light": _lights, "gamma": _ir}, 28.0, 1.0),
        ("masked-tree", {"noise": 3.0, "sway": TREE, "settings": masked}, 28.0, 1.0),
    ]
    for i, (name, kw, contrast, size) in enumerate(kinds):
        movers = _movers(rng, 4.0, n, contrast, size)
        duration = movers[-1].t1 + 8.0
        clips.append(Clip(name, duration, movers, seed=seed + i, **kw))
        clips.append(Clip(f"{name}-quiet", duration, [], seed=seed + 100 + i, **kw))
    return clips
