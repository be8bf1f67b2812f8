"""H.264 copies of H.265 clips, for browsers that cannot play H.265.

Cameras record H.265 and we keep it that way (half the disk of H.264). Chromium
without a hardware H.265 decoder (most Linux boxes, headless) cannot play it, so the
playback page asks for ``codec=h264`` when ``MediaSource.isTypeSupported`` says no,
and the clip is transcoded once, on request, next to the clip it was made from in
the clip cache (:class:`gateway.recorder.playback.ClipCache` keeps both within
``retention.clip_cache_mb`` and shares one build among concurrent requests).

The timestamps of the source clip are kept frame for frame, so the copy has the same
start, duration and held pictures over gaps as the original.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from pathlib import Path

import av

log = logging.getLogger(__name__)

X264_OPTIONS = {
    # Fast enough for a 2-core box to make a minute of 1080p in well under a minute, and
    # playable by every browser (no B-frames keeps the first picture at the first packet).
    "preset": "veryfast",
    "crf": "23",
    "x264-params": "bframes=0",
}


def _decode(packet: av.Packet, src: Path) -> list[av.VideoFrame]:
    """The frames of one packet; a damaged packet (a torn last fragment) gives none."""
    try:
        return list(packet.decode())
    except av.FFmpegError as err:
        log.debug("clip %s: a packet does not decode: %s", src.name, err)
        return []


class TranscodeFailed(RuntimeError):
    """The clip could not be decoded or encoded; the message says which."""


def transcode_to_h264(src: Path, dst: Path, *, threads: int = 2) -> int:
    """Write an H.264 MP4 of ``src``'s video to ``dst`` (blocking); the frames written.

    ``dst`` appears only when complete (written to ``.part`` first).
    """
    tmp = dst.with_suffix(".part")
    frames = 0
    try:
        with av.open(str(src)) as inp:
            ist = inp.streams.video[0]
            ist.thread_type = "AUTO"
            ist.codec_context.thread_count = threads
            out = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
            try:
                rate = ist.average_rate or Fraction(25)
                tb = ist.time_base or Fraction(1, 90000)
                ost = out.add_stream("libx264", rate=rate, options=dict(X264_OPTIONS))
                ost.width = ist.codec_context.width
                ost.height = ist.codec_context.height
                ost.pix_fmt = "yuv420p"
                ost.time_base = tb
                ost.codec_context.time_base = tb
                ost.codec_context.thread_count = threads
                last_pts: int | None = None
                for packet in inp.demux(ist):
                    for frame in _decode(packet, src):
                        if frame.pts is None:
                            continue
                        # The muxer refuses a repeated or backward time: a camera's
                        # timestamp hiccup recorded as it came must not fail the copy.
                        if last_pts is not None and frame.pts <= last_pts:
                            frame.pts = last_pts + 1
                        last_pts = frame.pts
                        if frame.format.name != "yuv420p":
                            frame = frame.reformat(format="yuv420p")
                        frame.time_base = tb
                        frame.pict_type = av.video.frame.PictureType.NONE
                        out.mux(ost.encode(frame))
                        frames += 1
                out.mux(ost.encode(None))
            finally:
                out.close()
    except (av.FFmpegError, OSError, IndexError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise TranscodeFailed(f"transcoding {src.name} to H.264 failed: {err}") from None
    if frames == 0:
        tmp.unlink(missing_ok=True)
        raise TranscodeFailed(f"{src.name} has no picture to transcode")
    os.replace(tmp, dst)
    log.info("clip %s transcoded to H.264: %d frames", src.name, frames)
    return frames
