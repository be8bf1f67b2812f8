"""A remote camera as a stream source: access units from a child, into a local hub.

The stream manager asks its resolvers for a source when a camera id contains ``/``;
the cascade answers with a :class:`RemoteSource` for paths below one of its
children. The child (and, recursively, its children) does the ingest and any
transcoding where the camera is; this hop only moves packets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.cascade.session import ChildGone, RemoteError
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.streams.hub import Hub
from gateway.streams.source import CONNECTING, OFFLINE, ONLINE, StreamSource

log = logging.getLogger(__name__)


class RemoteSource(StreamSource):
    """Feeds a hub with a camera of a child gateway, reopening it when the link drops."""

    kind = "cascade"

    def __init__(
        self, downlink: Any, path: str, profile: str = "main", variant: str | None = None
    ) -> None:
        super().__init__(f"{path}/{profile}" + (f"/{variant}" if variant else ""))
        self.downlink = downlink
        self.path = path
        self.profile = profile
        self.variant = variant
        self.frames = 0
        self.bytes = 0

    async def run(self, hub: Hub) -> None:
        delay = 0.5
        while True:
            self.state = CONNECTING
            try:
                session, ch = await self.downlink.open_stream(self.path, self.profile, self.variant)
            except (ChildGone, RemoteError, KeyError) as err:
                self.state = OFFLINE
                self.set_error(str(err) or type(err).__name__)
                log.info("remote camera %s: cannot open: %s", self.path, self.last_error)
                self.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.5
            ch.on_info = lambda msg: hub.set_info(_info(msg))
            ch.on_au = lambda au: self._publish(hub, au)
            if ch.info is not None:  # it came with the open response, before on_info was set
                hub.set_info(_info(ch.info))
            try:
                reason = await ch.ended
                self.set_error(reason)
                log.info("remote camera %s: stream ended: %s", self.path, reason)
            finally:
                self.state = OFFLINE
                # Tell the child even when cancelled; do not hold up the cancellation.
                asyncio.get_running_loop().create_task(self.downlink.close_stream(session, ch))
            hub.clear_gop()
            self.reconnects += 1
            await asyncio.sleep(delay)

    def _publish(self, hub: Hub, au: AccessUnit) -> None:
        if self.state != ONLINE:
            self.state = ONLINE
            self.online_since = time.time()
        self.frames += 1
        self.bytes += len(au.data)
        hub.publish(au)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "frames": self.frames, "bytes": self.bytes}


def _info(msg: Any) -> StreamInfo:
    try:
        extradata = bytes.fromhex(msg.extradata)
    except ValueError:
        extradata = b""
    return StreamInfo(
        codec=msg.codec,
        width=msg.width,
        height=msg.height,
        fps=msg.fps,
        profile=msg.profile,
        has_b_frames=msg.has_b_frames,
        gop=msg.gop,
        extradata=extradata,
        bitrate_bps=msg.bitrate_bps,
    )
