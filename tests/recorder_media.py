"""Access units for recorder tests: real H.264/H.265 from libx264/libx265 (Annex B)."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import numpy as np

from gateway.streams.packet import AccessUnit

TB = Fraction(1, 90000)


def encode_aus(
    frames: int,
    *,
    fps: int = 25,
    gop: int = 25,
    codec: str = "h264",
    size: tuple[int, int] = (320, 240),
    start_wall: float | None = None,
    epoch: int = 0,
    pts0: int = 0,
) -> list[AccessUnit]:
    """``frames`` encoded pictures with SPS/PPS in every keyframe, paced at ``fps``."""
    w, h = size
    name = "libx264" if codec == "h264" else "libx265"
    cc = av.CodecContext.create(name, "w")
    cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
    cc.time_base = Fraction(1, fps)
    cc.framerate = fps
    cc.gop_size = gop
    if codec == "h264":
        cc.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:repeat-headers=1:bframes=0",
        }
    else:
        cc.options = {
            "preset": "ultrafast",
            "x265-params": f"keyint={gop}:min-keyint={gop}:bframes=0:repeat-headers=1"
            ":log-level=error",
        }
    t0 = time.time() if start_wall is None else start_wall
    step = int(Fraction(1, fps) / TB)
    yy, xx = np.mgrid[0:h, 0:w]
    out: list[AccessUnit] = []

    def take(packets: list) -> None:
        for p in packets:
            i = len(out)
            out.append(
                AccessUnit(
                    bytes(p),
                    pts0 + i * step,
                    pts0 + i * step,
                    TB,
                    p.is_keyframe,
                    t0 + i / fps,
                    epoch,
                )
            )

    for i in range(frames):
        img = ((xx + yy + i * 4) % 256).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.stack([img, img, img], axis=-1), format="rgb24")
        frame.pts = i
        take(cc.encode(frame))
    take(cc.encode(None))
    return out[:frames]
