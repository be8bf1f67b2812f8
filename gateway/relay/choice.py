"""Which hub a WHEP viewer gets: the main stream, the camera's sub-stream, or a transcode.

The relay's choice for each new viewer, from the codecs its offer lists (``accepts``:
``h264``, ``hevc``) and the variant asked for:

- ``auto`` (the WHEP default): the main stream untouched when the viewer can take it
  (H.265 to a viewer that offered H.265, H.264 without B-frames), else the camera's own
  sub-stream when the viewer can take that (cameras commonly send H.265 on the main
  stream and H.264 on the sub-stream), else the shared H.264 transcode;
- ``None`` (``variant=main``): the main stream, or its transcode when it cannot pass;
- ``low``: the shared low-bitrate transcode.

A viewer starts on the latest keyframe of the chosen hub, so the choice waits for one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from gateway.cameras.registry import Registry
from gateway.config import RelaySettings
from gateway.media.access_unit import StreamInfo
from gateway.relay import whep
from gateway.relay.model import CameraNotFound, CameraUnavailable
from gateway.streams.hub import Hub, fresh_keyframe
from gateway.streams.manager import Lease, StreamManager

log = logging.getLogger(__name__)

# A sub-stream found unfit (H.265 too, or B-frames) is not asked again for this long:
# ``auto`` is the default, and each probe would cost the viewer time and the camera an
# RTSP session. One that was merely slow to start is asked again next time.
SUB_UNFIT_S = 300.0


class SourceChooser:
    """Leases the hub each new viewer gets (see the module docstring)."""

    def __init__(self, settings: RelaySettings, registry: Registry, rejected: Counter[str]) -> None:
        self.settings = settings
        self.registry = registry  # why a camera is offline, for the 503
        self.rejected = rejected  # the relay's refusal counters, by reason
        self._sub_unfit: dict[tuple[str, frozenset[str]], float] = {}  # → when found unfit

    async def choose(
        self,
        streams: StreamManager,
        camera_id: str,
        variant: str | None,
        sid: str,
        accepts: set[str],
    ) -> tuple[Lease, bytes, str | None]:
        """Lease the hub this viewer gets and wait for its first keyframe.

        ``accepts`` are the codecs the viewer offered (``h264``, ``hevc``): an H.265
        camera goes through untouched to a viewer that offered H.265.
        Returns the lease, that keyframe, and the variant actually used.
        """
        auto = variant == "auto"
        if auto:
            variant = None
        lease: Lease | None  # None while between the main stream and its transcode
        lease = self.acquire(streams, camera_id, variant, sid)
        try:
            first = await self.wait_keyframe(camera_id, lease.hub)
            info = lease.hub.info
            if auto and info is not None and not passes(info, accepts) and "h264" in accepts:
                sub = await self._sub_stream(streams, camera_id, sid, accepts)
                if sub is not None:
                    lease.release()
                    log.info(
                        "%s: %s source%s, viewer gets the sub-stream",
                        camera_id,
                        info.codec,
                        " with B-frames" if info.has_b_frames else "",
                    )
                    return sub[0], sub[1], "sub"
            if variant is None and info is not None and not passes(info, accepts):
                # H.265, MJPEG or B-frames: browsers get the shared transcode instead.
                # Take the transcode before letting go of the source, so the ingest
                # does not stop in between.
                if "h264" not in accepts:
                    self.rejected["codec"] += 1
                    raise whep.OfferError(
                        f"camera {camera_id} sends {info.codec}"
                        f"{' with B-frames' if info.has_b_frames else ''}"
                        " and the offer has no H.264 to transcode it to"
                    )
                log.info(
                    "%s: %s source%s, viewer gets the h264 transcode",
                    camera_id,
                    info.codec,
                    " with B-frames" if info.has_b_frames else "",
                )
                main, variant, lease = lease, "h264", None
                try:
                    lease = self.acquire(streams, camera_id, variant, sid)
                finally:
                    main.release()
                first = await self.wait_keyframe(camera_id, lease.hub)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        return lease, first, variant

    async def _sub_stream(
        self, streams: StreamManager, camera_id: str, sid: str, accepts: set[str]
    ) -> tuple[Lease, bytes] | None:
        """The camera's own sub-stream when this viewer can take it untouched, else None.

        Cameras commonly send H.265 on the main stream and H.264 on the sub-stream;
        ONVIF Media1 often names both H264, so the stream itself is asked.
        """
        if streams.cameras.effective_profile(camera_id, "sub") != "sub":
            return None  # no sub-stream of its own
        key = (camera_id, frozenset(accepts))
        if time.monotonic() - self._sub_unfit.get(key, -SUB_UNFIT_S) < SUB_UNFIT_S:
            return None
        try:
            lease = streams.acquire(camera_id, "sub", consumer=f"whep:{sid}")
        except (KeyError, ValueError, RuntimeError):
            return None
        try:
            # As long as for the main stream (``relay.source_wait_s``): a busy box or a
            # camera slow to open its second session must not cost a transcode.
            wait = self.settings.source_wait_s
            first = await self.wait_keyframe(camera_id, lease.hub, timeout=wait)
        except CameraUnavailable:
            lease.release()
            return None
        info = lease.hub.info
        if info is None or not passes(info, accepts):
            lease.release()
            self._sub_unfit[key] = time.monotonic()
            return None
        self._sub_unfit.pop(key, None)
        return lease, first

    def acquire(
        self, streams: StreamManager, camera_id: str, variant: str | None, sid: str
    ) -> Lease:
        try:
            return streams.acquire(camera_id, "main", variant=variant, consumer=f"whep:{sid}")
        except KeyError:  # UnknownCamera is a KeyError
            self.rejected["unknown"] += 1
            raise CameraNotFound(f"unknown camera {camera_id!r} / 未知摄像机") from None
        except (ValueError, RuntimeError) as err:
            self.rejected["unavailable"] += 1
            raise CameraUnavailable(f"camera {camera_id}: {err}", retry_after=2) from None

    async def wait_keyframe(self, camera_id: str, hub: Hub, timeout: float | None = None) -> bytes:
        """The cached GOP's keyframe once the hub has fresh video, else 503 with a reason."""
        wait = self.settings.source_wait_s if timeout is None else timeout
        data = await fresh_keyframe(hub, wait)
        if data is not None:
            return data
        if timeout is None:  # a probe (``auto``'s sub-stream) is no rejection
            self.rejected["offline"] += 1
        raise CameraUnavailable(
            f"camera {camera_id} is offline: {self._offline_reason(camera_id)} / 摄像机离线",
            retry_after=1,
        )

    def _offline_reason(self, camera_id: str) -> str:
        cam = self.registry.get(camera_id)
        status = cam.status if cam is not None else None
        reason = cam.reason if cam is not None else ""
        if status and status != "online":
            return f"{status}{': ' + reason if reason else ''}"
        return f"no video within {self.settings.source_wait_s:g} s"


def passes(info: StreamInfo, accepts: set[str]) -> bool:
    """Whether a viewer that offered ``accepts`` can take this stream untouched."""
    if info.has_b_frames:  # WebRTC decoders stall on reordered frames
        return False
    return info.codec in accepts and info.codec in ("h264", "hevc")
