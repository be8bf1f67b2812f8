"""Snapshots: a JPEG from the cached keyframe, the camera's snapshot URI, or the stream.

In order of cost: decode the keyframe a running hub already holds; else fetch the
camera's ONVIF snapshot through the registry (``await registry.snapshot(id)``, when the
manager has a registry); else start the stream briefly, wait for its first keyframe and
decode that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import av

from gateway.aio import within
from gateway.logs import redact
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.media.avcodec import video_context
from gateway.streams.cameras import CameraLookup
from gateway.streams.hub import Hub

log = logging.getLogger(__name__)


class SnapshotUnavailable(LookupError):
    """No picture could be had: no cached keyframe, no snapshot URI, no stream."""


class _Lease(Protocol):
    hub: Hub

    def release(self) -> None: ...


class StreamManager(Protocol):
    """What a snapshot needs of the stream manager (it is the only implementation)."""

    cameras: CameraLookup

    def hub(
        self, camera_id: str, profile: str = "main", variant: str | None = None
    ) -> Hub | None: ...

    def acquire(
        self,
        camera_id: str,
        profile: str = "main",
        variant: str | None = None,
        consumer: str = "",
    ) -> _Lease: ...


def decode_jpeg(info: StreamInfo, units: list[AccessUnit], quality: int = 85) -> bytes:
    """Decode the first picture of ``units`` (a GOP from its keyframe) to JPEG."""
    import cv2  # imported here: only snapshots need OpenCV

    if info.codec == "mjpeg" and units:
        return units[0].data
    ctx = video_context(info.codec, "r")
    if info.extradata:
        ctx.extradata = info.extradata
    frame = None
    for au in units[:8]:  # a decoder may hold the first picture back a little
        packet = av.Packet(au.data)
        packet.pts, packet.dts = au.pts, au.dts
        frames = ctx.decode(packet)
        if frames:
            frame = frames[0]
            break
    if frame is None:
        frames = ctx.decode(None)
        frame = frames[0] if frames else None
    if frame is None:
        raise ValueError("the keyframe did not decode")
    ok, buf = cv2.imencode(
        ".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


async def _from_hub(manager: StreamManager, camera_id: str, profile: str) -> bytes | None:
    for prof in dict.fromkeys([profile, "main", "sub"]):
        hub = manager.hub(camera_id, prof)
        if hub is None or hub.info is None:
            continue
        gop = hub.gop
        if gop and gop[0].keyframe:
            try:
                return await asyncio.to_thread(decode_jpeg, hub.info, gop)
            except (ValueError, av.FFmpegError) as err:
                log.info("%s: cached keyframe did not decode: %s", camera_id, err)
    return None


async def _from_uri(manager: StreamManager, camera_id: str, timeout: float) -> bytes | None:
    registry = manager.cameras.registry
    if registry is None:
        return None
    try:  # the registry fetches it (ONVIF client, credentials)
        jpeg = await within(registry.snapshot(camera_id), timeout)
    except Exception as err:
        log.info("%s: registry snapshot failed: %s", camera_id, redact(str(err)))
        return None
    return jpeg if isinstance(jpeg, bytes) and jpeg.startswith(b"\xff\xd8") else None


async def _from_stream(
    manager: StreamManager, camera_id: str, profile: str, timeout: float
) -> bytes | None:
    lease = manager.acquire(camera_id, profile, consumer="snapshot")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hub = lease.hub
            gop = hub.gop
            if hub.info is not None and gop and gop[0].keyframe:
                return await asyncio.to_thread(decode_jpeg, hub.info, gop)
            await asyncio.sleep(0.1)
        return None
    finally:
        lease.release()


async def take_snapshot(
    manager: StreamManager, camera_id: str, profile: str, timeout: float
) -> bytes:
    """See the module docstring. Raises UnknownCamera or SnapshotUnavailable."""
    jpeg = await _from_hub(manager, camera_id, profile)
    if jpeg is None:
        jpeg = await _from_uri(manager, camera_id, timeout)
    if jpeg is None:
        jpeg = await _from_stream(manager, camera_id, profile, timeout)
    if jpeg is None:
        raise SnapshotUnavailable(f"no picture from camera {camera_id!r} within {timeout:.0f} s")
    return jpeg
