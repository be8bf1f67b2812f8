"""Transcoded variants of a camera stream: decode once, encode H.264 once.

A :class:`TranscodeSource` subscribes to a camera's base hub and feeds a variant
hub, shared by every viewer of that camera and variant (decision 3):

- ``"h264"``: same size, for sources browsers cannot take as they are (H.265,
  MJPEG, H.264 with B-frames). An H.264 source without B-frames is forwarded
  untouched, so asking for this variant never costs a transcode needlessly.
- ``"low"``: ``relay.low_width`` × ``relay.low_height`` at ``relay.low_bitrate_kbps``
  for thin uplinks, always transcoded.

libx264 runs with ``tune=zerolatency``, no B-frames, a GOP of about one second and
the parameter sets repeated before every keyframe. Decode and encode run in one
worker thread. The base subscription is small: when the encoder falls behind, the
hub drops whole GOPs for this subscriber, and frames already queued beyond a couple
are decoded (they are references) but not encoded. Nothing queues without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType

from gateway.config import RelaySettings
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.media.avcodec import video_context
from gateway.media.params import ParameterSets
from gateway.streams.hub import Hub, HubClosed
from gateway.streams.source import CONNECTING, OFFLINE, ONLINE, STOPPED, StreamSource

log = logging.getLogger(__name__)

VARIANTS = ("h264", "low")
# Queued access units beyond which decoded frames are not encoded (catching up).
BACKLOG = 3


class TranscodeSource(StreamSource):
    """Feeds a variant hub from a base hub (see the module docstring)."""

    kind = "transcode"

    def __init__(self, name: str, base: Hub, variant: str, relay: RelaySettings) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
        super().__init__(name)
        self.base = base
        self.variant = variant
        self.relay = relay
        self.mode = "idle"  # "transcode" | "passthrough"
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0  # decoded but not encoded: encoder behind
        self.decode_errors = 0
        self.encode_seconds = 0.0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._out: Hub | None = None
        self._dec: Any = None
        self._dec_key: tuple[str, int] | None = None
        self._enc: Any = None
        self._enc_size: tuple[int, int] = (0, 0)
        self._params = ParameterSets("h264")
        self._out_epoch = 0
        self._in_epoch: int | None = None
        self._last_pts: int | None = None

    async def run(self, hub: Hub) -> None:
        self._out = hub
        self.state = CONNECTING
        sub = self.base.subscribe(f"transcode:{self.variant}", maxsize=64)
        self._stop.clear()
        self._done.clear()
        thread = threading.Thread(
            target=self._main, args=(sub,), name=f"transcode {self.name}", daemon=True
        )
        thread.start()
        try:
            while not self._done.is_set():
                await asyncio.sleep(0.1)
        finally:
            self._stop.set()
            sub.close()
            with contextlib.suppress(asyncio.CancelledError):
                while not self._done.is_set():
                    await asyncio.sleep(0.02)
            self.state = STOPPED

    # -- worker thread ------------------------------------------------------------------
    def _main(self, sub: Any) -> None:
        try:
            while not self._stop.is_set():
                try:
                    au = sub.get_blocking(0.25)
                except HubClosed:
                    return
                if au is not None:
                    self._handle(au, sub.qsize)
        except Exception as err:
            self.set_error(f"transcoder failed: {err}")
            log.exception("%s: transcoder failed", self.name)
        finally:
            self._dec = self._enc = None
            self._done.set()

    def _handle(self, au: AccessUnit, backlog: int) -> None:
        info = self.base.info
        if info is None:
            return
        if self.variant == "h264" and info.passthrough_ok:
            self._forward(au, info)
            return
        if self.mode != "transcode":
            if not au.keyframe:
                return  # switching modes: start on a keyframe
            self.mode = "transcode"
            self._enc = None
        if au.epoch != self._in_epoch:
            self._in_epoch = au.epoch
            self._enc = None  # restart the output on a new epoch too
        key = (info.codec, au.epoch)
        if self._dec is None or self._dec_key != key:
            self._dec = video_context(info.codec, "r")
            if info.extradata:
                self._dec.extradata = info.extradata
            self._dec.thread_type = "SLICE"  # frame threads would add latency
            self._dec_key = key
        packet = av.Packet(au.data)
        packet.pts, packet.dts, packet.time_base = au.pts, au.dts, au.time_base
        try:
            frames = self._dec.decode(packet)
        except av.FFmpegError as err:
            self.decode_errors += 1
            self.set_error(f"decode: {err}")
            return
        for frame in frames:
            self.frames_in += 1
            if backlog > BACKLOG:
                self.dropped += 1
                continue
            self._encode(frame, au, info)

    def _forward(self, au: AccessUnit, info: StreamInfo) -> None:
        assert self._out is not None
        if self.mode != "passthrough":
            if not au.keyframe:
                return
            self.mode = "passthrough"
            self._out.clear_gop()
            self._out.set_info(info)
            self._went_online()
        self.frames_out += 1
        self._out.publish(au)

    def _encode(self, frame: av.VideoFrame, au: AccessUnit, info: StreamInfo) -> None:
        assert self._out is not None
        if self.variant == "low":
            size = (self.relay.low_width, self.relay.low_height)
            kbps = self.relay.low_bitrate_kbps
        else:
            size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
            kbps = self.relay.transcode_bitrate_kbps
        fps = info.fps if 1 <= info.fps <= 120 else 25.0
        if self._enc is None or self._enc_size != size:
            self._open_encoder(size, kbps, fps, au.time_base)
        pts = frame.pts if frame.pts is not None else au.pts
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # x264 refuses pts that do not rise
        self._last_pts = pts
        out = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        out.pts, out.time_base = pts, au.time_base
        # The decoder marks the source's keyframes as I; libx264 would obey and cut
        # its GOPs where the camera did. Let the encoder keep its own ~1 s cadence.
        out.pict_type = PictureType.NONE
        start = time.perf_counter()
        packets = self._enc.encode(out)
        self.encode_seconds += time.perf_counter() - start
        for p in packets:
            self.frames_out += 1
            self._out.publish(
                AccessUnit(
                    data=self._params.fix(bytes(p), p.is_keyframe),
                    pts=p.pts,
                    dts=p.dts,
                    time_base=au.time_base,
                    keyframe=p.is_keyframe,
                    wallclock=au.wallclock,  # the camera's arrival time, for latency
                    epoch=self._out_epoch,
                )
            )

    def _open_encoder(
        self, size: tuple[int, int], kbps: int, fps: float, time_base: Fraction
    ) -> None:
        assert self._out is not None
        gop = max(1, round(fps))
        enc = video_context("libx264", "w")
        enc.width, enc.height = size
        enc.pix_fmt = "yuv420p"
        enc.time_base = time_base
        enc.framerate = Fraction(fps).limit_denominator(1001)
        enc.bit_rate = kbps * 1000
        # Full-size HD costs too much at veryfast on a small box; ultrafast keeps up.
        preset = "ultrafast" if size[0] * size[1] > 1280 * 720 else "veryfast"
        enc.options = {
            "preset": preset,
            "tune": "zerolatency",
            "profile": "baseline",
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:repeat-headers=1:"
                f"vbv-maxrate={kbps}:vbv-bufsize={kbps}"
            ),
        }
        enc.open()
        self._enc = enc
        self._enc_size = size
        self._last_pts = None
        self._out_epoch += 1
        self._out.clear_gop()
        self._out.set_info(
            StreamInfo(
                codec="h264",
                width=size[0],
                height=size[1],
                fps=fps,
                profile="Constrained Baseline",
                has_b_frames=False,
                gop=gop,
                bitrate_bps=kbps * 1000.0,
                extra={"variant": self.variant, "preset": preset},
            )
        )
        log.info("%s: encoding %dx%d at %d kbit/s (%s)", self.name, size[0], size[1], kbps, preset)
        self._went_online()

    def _went_online(self) -> None:
        if self.state != ONLINE:
            self.state = ONLINE
            self.online_since = time.time()

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        if self.state == ONLINE and self.base.closed:
            out["state"] = OFFLINE
        out.update(
            variant=self.variant,
            mode=self.mode,
            frames_in=self.frames_in,
            frames_out=self.frames_out,
            dropped=self.dropped,
            decode_errors=self.decode_errors,
            encode_ms_per_frame=round(1000 * self.encode_seconds / self.frames_out, 2)
            if self.frames_out and self.mode == "transcode"
            else None,
        )
        return out
