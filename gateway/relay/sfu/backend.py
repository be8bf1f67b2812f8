"""One Janus server as the SFU part sees it: its session, its mountpoints (one per
camera and H.264 payload type, each with the RTP feed from the gateway), whether it
is up, and when to try it again."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.config import SfuSettings
from gateway.relay.sfu.feed import RtpFeed
from gateway.relay.sfu.janus import Event, JanusClient, JanusError
from gateway.streams.manager import Lease

log = logging.getLogger(__name__)

Key = tuple[str, int]  # (camera id, H.264 payload type)


@dataclass(eq=False)
class Mountpoint:
    """A camera (at one payload type) on Janus: its id and the RTP feed into it."""

    id: int
    feed: RtpFeed
    lease: Lease
    viewers: set[str] = field(default_factory=set)
    idle_since: float | None = None


class JanusBackend:
    """A Janus server: session, mountpoints and feeds, up/down state.

    ``on_event(backend, event)`` gets Janus's asynchronous events; ``on_down(backend)``
    is called when the server is lost (its viewers are then the caller's business).
    """

    def __init__(
        self,
        url: str,
        settings: SfuSettings,
        *,
        tag: str,
        rtp_host: str | None,
        feed_buffer: int,
        on_event: Callable[[JanusBackend, Event], None],
        on_down: Callable[[JanusBackend], None],
    ) -> None:
        self.url = url
        self.name = urlsplit(url).netloc.rpartition("@")[2] or url
        self.settings = settings
        self.tag = tag
        self.rtp_host = rtp_host or urlsplit(url).hostname or "127.0.0.1"
        self.client = JanusClient(
            url,
            api_secret=settings.api_secret.get_secret_value() if settings.api_secret else None,
            timeout=settings.request_timeout_s,
            on_event=lambda event: on_event(self, event),
            on_down=lambda reason: self.mark_down(reason),
        )
        self._on_down = on_down
        self.mountpoints: dict[Key, Mountpoint] = {}
        self.admin: int | None = None
        self.down_reason = "not connected yet"
        self.retry_at = 0.0
        self._feed_buffer = feed_buffer
        self._locks: dict[Key, asyncio.Lock] = {}

    @property
    def up(self) -> bool:
        return self.client.up and self.admin is not None

    def _with_key(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.settings.admin_key is not None:
            request["admin_key"] = self.settings.admin_key.get_secret_value()
        return request

    async def connect(self) -> bool:
        """Open a session and clear our stale mountpoints; False (and retry later) if down."""
        try:
            await self.client.connect()
            self.admin = await self.client.attach()
            await self._sweep()
        except JanusError as err:
            self.admin = None
            self.down_reason = str(err)
            self.retry_at = time.monotonic() + self.settings.retry_s
            log.warning("SFU %s unavailable: %s", self.name, err)
            with contextlib.suppress(JanusError):
                await self.client.close()
            return False
        self.down_reason = ""
        return True

    async def _sweep(self) -> None:
        """Remove mountpoints of ours left on Janus (our crash, or a Janus that hung)."""
        assert self.admin is not None
        data = await self.client.request(self.admin, self._with_key({"request": "list"}))
        stale = [
            m for m in data.get("list") or [] if str(m.get("description", "")).startswith(self.tag)
        ]
        for m in stale:
            with contextlib.suppress(JanusError):
                await self.client.request(self.admin, self._destroy(int(m["id"])))
        if stale:
            log.info("SFU %s: removed %d mountpoints left from before", self.name, len(stale))

    def _destroy(self, mp_id: int) -> dict[str, Any]:
        return self._with_key({"request": "destroy", "id": mp_id})

    def mark_down(self, reason: str) -> None:
        """The server is lost: stop feeding it; the SFU part closes its viewers."""
        if self.admin is None:  # already down (or never up)
            return
        self.admin = None
        self.down_reason = reason
        self.retry_at = time.monotonic() + self.settings.retry_s
        log.warning("SFU %s down: %s", self.name, reason)
        self._on_down(self)

    async def mountpoint(self, key: Key, fmtp: str, lease: Lease) -> Mountpoint:
        """The camera's mountpoint, created and fed on first use; takes or releases ``lease``."""
        async with self._locks.setdefault(key, asyncio.Lock()):
            mp = self.mountpoints.get(key)
            if mp is not None and not mp.feed.ended:
                lease.release()
                return mp
            if mp is not None:
                await self.drop(key)
            try:
                mp = await self._create(key, fmtp, lease)
            except BaseException:
                lease.release()
                raise
            self.mountpoints[key] = mp
            return mp

    async def _create(self, key: Key, fmtp: str, lease: Lease) -> Mountpoint:
        if self.admin is None:
            raise JanusError(f"SFU {self.name} is down")
        mp_id = secrets.randbelow(2**31 - 1) + 1
        media = {
            "type": "video",
            "mid": "v",
            "port": 0,
            "pt": key[1],
            "codec": "h264",
            "fmtp": fmtp,
            # Not bufferkf: Janus would send a late viewer the last keyframe and then the
            # live P-frames, which reference frames it never sent (a smeared picture
            # until the next IDR). A viewer starts at the camera's next keyframe instead.
            "bufferkf": False,
        }
        request: dict[str, Any] = {
            "request": "create",
            "type": "rtp",
            "id": mp_id,
            "description": f"{self.tag}{key[0]}",
            "is_private": True,
            "media": [media],
        }
        srtp_key = secrets.token_bytes(30) if self.settings.srtp else None  # key + salt
        if srtp_key is not None:
            request["srtpsuite"] = 80
            request["srtpcrypto"] = base64.b64encode(srtp_key).decode()
        data = await self.client.request(self.admin, self._with_key(request))
        try:
            port = int(data["stream"]["ports"][0]["port"])
        except (KeyError, IndexError, TypeError, ValueError):
            raise JanusError("Janus created the mountpoint without a port") from None
        feed = RtpFeed(
            key[0],
            lease.hub,
            self.rtp_host,
            port,
            key[1],
            maxsize=self._feed_buffer,
            srtp_key=srtp_key,
        )
        feed.start()
        log.info("%s: fed to SFU %s (mountpoint %d, pt %d)", key[0], self.name, mp_id, key[1])
        return Mountpoint(mp_id, feed, lease, idle_since=time.monotonic())

    async def drop(self, key: Key) -> None:
        """Stop feeding a mountpoint and remove it from Janus (if Janus is there)."""
        mp = self.mountpoints.pop(key, None)
        if mp is None:
            return
        await mp.feed.stop()
        mp.lease.release()
        if self.up and self.admin is not None:
            with contextlib.suppress(JanusError):
                await self.client.request(self.admin, self._destroy(mp.id))
        log.info(
            "%s: SFU %s feed stopped after %d RTP packets (%d bytes)",
            key[0],
            self.name,
            mp.feed.packets_sent,
            mp.feed.bytes_sent,
        )

    async def drop_all(self) -> None:
        for key in list(self.mountpoints):
            await self.drop(key)

    def public(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "up": self.up,
            "down_reason": self.down_reason or None,
            "feeds": [
                mp.feed.public() | {"viewers": len(mp.viewers)} for mp in self.mountpoints.values()
            ],
        }
