"""PyAV video codec contexts, typed: ``av.CodecContext.create`` is typed as the generic base."""

from __future__ import annotations

from typing import Literal

import av
from av.video.codeccontext import VideoCodecContext


def video_context(name: str, mode: Literal["r", "w"]) -> VideoCodecContext:
    """A decoder (``"r"``) or encoder (``"w"``) for the video codec ``name``."""
    ctx = av.CodecContext.create(name, mode)
    if not isinstance(ctx, VideoCodecContext):
        raise ValueError(f"{name!r} is not a video codec")
    return ctx
