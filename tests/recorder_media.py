"""Access units for recorder tests: real H.264/H.265 from libx264/libx265 (Annex B)."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import numpy as np

from gateway.media.access_unit import AccessUnit

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


class HubFeeder:
    """Publishes a looped, pre-encoded stream into a real Hub at its real frame rate.

    ``pause(seconds)`` stops publishing (a camera drop-out); the stream resumes in a new
    epoch with timestamps restarting, as an ingest reconnect does.
    """

    def __init__(self, hub, fps: int = 25, gop: int = 25, seconds: int = 2, **kw) -> None:
        import threading

        self.hub = hub
        self.fps = fps
        self.units = encode_aus(fps * seconds, fps=fps, gop=gop, **kw)
        self.epoch = 1
        self.published = 0
        self.first_wall: float | None = None
        self._pause_until = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HubFeeder:
        self._thread.start()
        return self

    def pause(self, seconds: float) -> None:
        self._pause_until = time.monotonic() + seconds

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        step = int(Fraction(1, self.fps) / TB)
        t0 = time.monotonic()
        i = n = 0
        while not self._stop.is_set():
            if time.monotonic() < self._pause_until:
                time.sleep(0.01)
                t0, i, n = None, 0, 0
                continue
            if t0 is None:  # back from a pause: reconnect, new epoch, keyframe first
                t0 = time.monotonic()
                self.epoch += 1
            delay = t0 + i / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            src = self.units[n % len(self.units)]
            au = AccessUnit(src.data, i * step, i * step, TB, src.keyframe, time.time(), self.epoch)
            if self.first_wall is None:
                self.first_wall = au.wallclock
            self.hub.publish(au)
            self.published += 1
            i += 1
            n += 1


class Lease:
    def __init__(self, hub) -> None:
        self.hub = hub
        self.released = 0

    def release(self) -> None:
        self.released += 1


class HubStreams:
    """The ``gw.streams`` contract (acquire → Lease) over hubs a test feeds itself."""

    def __init__(self) -> None:
        self.hubs: dict[tuple[str, str], object] = {}

    def acquire(self, camera_id: str, profile: str = "main", variant=None, consumer: str = ""):
        try:
            return Lease(self.hubs[(camera_id, profile)])
        except KeyError:
            raise KeyError(camera_id) from None


def random_base() -> str:
    """A loopback address for a simulator that concurrent test runs will not share."""
    import random

    return f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.1"
