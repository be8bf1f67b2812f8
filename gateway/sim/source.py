"""The simulated camera's encoders.

:class:`ProfileEncoder` encodes one profile of one camera in a worker thread
(PyAV releases the GIL while encoding) and hands each access unit to its
subscribers on the event loop. It runs only while someone subscribes, so a
hundred idle cameras cost nothing; snapshots render a frame on demand.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.codeccontext import VideoCodecContext

from gateway.media.annexb import iter_nals
from gateway.media.avcodec import video_context
from gateway.media.nal import first_parameter_sets
from gateway.sim.camera import SimCamera, SimProfile
from gateway.sim.rtp import h264_payloads, h265_payloads, jpeg_payloads
from gateway.sim.scene import MOTION_BAND, Scene, picture_fault

log = logging.getLogger(__name__)

IDLE_STOP_S = 1.0  # an encoder with no subscriber stops after this

_CODECS = {"H264": "libx264", "H265": "libx265", "JPEG": "mjpeg"}


@dataclass(slots=True)
class EncodedUnit:
    """One access unit as the encoder produced it."""

    data: bytes  # Annex B (H.264/H.265) or a whole JPEG
    nals: list[bytes]  # NAL units without start codes (empty for JPEG)
    keyframe: bool
    wall: float  # wall-clock time of the frame on the stream's smooth time line
    capture_ms: int  # the barcode's value
    payloads: list[bytes] = field(default_factory=list)  # RTP payloads, cut once for all


def make_codec_context(profile: SimProfile) -> VideoCodecContext:
    """A PyAV encoder for the profile: low latency, fixed GOP, one thread."""
    name = _CODECS[profile.encoding]
    ctx = video_context(name, "w")
    ctx.width, ctx.height = profile.width, profile.height
    ctx.time_base = Fraction(1, profile.fps)
    ctx.framerate = Fraction(profile.fps, 1)
    ctx.gop_size = profile.gop
    # One thread per encoder: fifty cameras must not spawn hundreds of threads.
    ctx.thread_count = 1
    if name == "mjpeg":
        ctx.pix_fmt = "yuvj420p"
        ctx.bit_rate = profile.bitrate_kbps * 1000
        # RTP/JPEG receivers rebuild the headers with the standard Huffman tables
        ctx.options = {"huffman": "default"}
        return ctx
    ctx.pix_fmt = "yuv420p"
    ctx.bit_rate = profile.bitrate_kbps * 1000
    bframes = 2 if profile.bframes else 0
    ctx.max_b_frames = bframes
    if name == "libx264":
        params = f"scenecut=0:bframes={bframes}:keyint={profile.gop}:min-keyint={profile.gop}"
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",  # a joining player gets a real random access point
            "x264-params": params,
        }
    else:
        params = (
            f"repeat-headers=1:scenecut=0:bframes={bframes}:keyint={profile.gop}"
            f":min-keyint={profile.gop}:log-level=error:pools=1:frame-threads=1"
        )
        if bframes:
            # tune=zerolatency turns the lookahead off, and x265 refuses B-frames without
            # a lookahead longer than a run of them ("Lookahead depth must be greater...").
            params += f":rc-lookahead={bframes + 1}"
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",  # without it libx265 ignores a forced I picture
            "x265-params": params,
        }
    return ctx


class ProfileEncoder:
    """Encodes one camera profile while at least one subscriber listens.

    Subscribers are callables run on ``loop`` with each :class:`EncodedUnit`.
    """

    def __init__(
        self,
        camera: SimCamera,
        profile: SimProfile,
        scene: Scene,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.camera = camera
        self.profile = profile
        self.scene = scene
        self.loop = loop
        self._subs: dict[int, Callable[[EncodedUnit], None]] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._force_key = threading.Event()
        self._param_sets: list[bytes] | None = None
        self._frozen: np.ndarray | None = None  # the picture repeated while "freeze"
        self.frames_encoded = 0
        self.errors = 0

    # -- subscribers (event loop) -----------------------------------------

    def subscribe(self, fn: Callable[[EncodedUnit], None]) -> int:
        """Start receiving units; the next one sent is a keyframe soon after."""
        with self._lock:
            self._next_id += 1
            self._subs[self._next_id] = fn
            self._force_key.set()
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name=f"sim-enc-{self.camera.id}{self.profile.rtsp_path}"
                )
                self._thread.daemon = True
                self._thread.start()
            return self._next_id

    def request_keyframe(self) -> None:
        """Make the next encoded frame an IDR (a player joined or resumed)."""
        self._force_key.set()

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subs.pop(token, None)

    @property
    def subscribers(self) -> int:
        """How many players receive this profile now."""
        return len(self._subs)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def close(self) -> None:
        """Stop the worker thread for good (shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(5)

    async def parameter_sets(self) -> list[bytes]:
        """SPS/PPS (and VPS for H.265) NAL units for the SDP, by encoding one frame once."""
        if self._param_sets is None and self.profile.encoding in ("H264", "H265"):
            self._param_sets = await asyncio.to_thread(self._probe_parameter_sets)
        return self._param_sets or []

    def _probe_parameter_sets(self) -> list[bytes]:
        ctx = make_codec_context(self.profile)
        frame = self._frame(time.time(), 0)
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        for pkt in packets:
            sets = _parameter_sets(list(iter_nals(bytes(pkt))), self.profile.encoding)
            if sets:
                return sets
        raise RuntimeError(f"{self.camera.id}: encoder gave no parameter sets")

    # -- worker thread -----------------------------------------------------

    def _frame(self, now: float, n: int) -> av.VideoFrame:
        p = self.profile
        mode = self.camera.picture
        if mode == "freeze" and self._frozen is not None:
            img = self._frozen  # the same picture again, its noise included
        else:
            img = self.scene.render(p.width, p.height, now, n, self.camera.motion, self.camera.ptz)
            if mode != "normal":
                picture_fault(img, p.width, p.height, mode)
        self._frozen = img if mode == "freeze" else None
        frame = av.VideoFrame.from_ndarray(img, format="yuv420p")
        if p.encoding == "JPEG":
            frame = frame.reformat(format="yuvj420p")
        frame.pts = n
        frame.time_base = Fraction(1, p.fps)
        return frame

    def _run(self) -> None:
        p, cam = self.profile, self.camera
        log.info("%s%s: encoder start %dx%d@%d %s", cam.id, p.rtsp_path, p.width, p.height,
                 p.fps, p.encoding)  # fmt: skip
        ctx = make_codec_context(p)
        mono0, wall0 = time.monotonic(), time.time()
        n = 0
        idle_since: float | None = None
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self._subs:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since > IDLE_STOP_S:
                        self._thread = None
                        break
                due = mono0 + n / p.fps
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -2 / p.fps:  # behind: skip frames rather than pile up
                    n = int((time.monotonic() - mono0) * p.fps)
                now = time.time()
                frame = self._frame(now, n)
                if self._force_key.is_set():
                    self._force_key.clear()
                    frame.pict_type = av.video.frame.PictureType.I
                for pkt in ctx.encode(frame):
                    # time each unit by its own pts: with B-frames output order differs
                    pts = pkt.pts if pkt.pts is not None else n
                    self._publish(pkt, wall0 + pts / p.fps, int(now * 1000))
                self.frames_encoded += 1
                n += 1
        except Exception:
            self.errors += 1
            log.exception("%s%s: encoder failed", cam.id, p.rtsp_path)
            with self._lock:
                self._thread = None
        log.info("%s%s: encoder stop after %d frames", cam.id, p.rtsp_path, n)

    def _publish(self, pkt: av.Packet, wall: float, capture_ms: int) -> None:
        data = bytes(pkt)
        encoding = self.profile.encoding
        if encoding == "JPEG":
            nals: list[bytes] = []
            payloads = jpeg_payloads(data, self.profile.width, self.profile.height)
        else:
            nals = list(iter_nals(data))
            if self._param_sets is None:
                self._param_sets = _parameter_sets(nals, encoding) or None
            payloads = h264_payloads(nals) if encoding == "H264" else h265_payloads(nals)
        unit = EncodedUnit(data, nals, bool(pkt.is_keyframe), wall, capture_ms, payloads)
        try:
            self.loop.call_soon_threadsafe(self._fanout, unit)
        except RuntimeError:  # loop closed during shutdown
            self._stop.set()

    def _fanout(self, unit: EncodedUnit) -> None:
        for fn in list(self._subs.values()):
            try:
                fn(unit)
            except Exception:
                log.exception("%s%s: subscriber failed", self.camera.id, self.profile.rtsp_path)


def _parameter_sets(nals: list[bytes], encoding: str) -> list[bytes]:
    """The VPS/SPS/PPS among ``nals``, in order, or [] when one is missing."""
    return first_parameter_sets("h264" if encoding == "H264" else "hevc", nals)


__all__ = ["MOTION_BAND", "EncodedUnit", "ProfileEncoder", "Scene", "make_codec_context"]
