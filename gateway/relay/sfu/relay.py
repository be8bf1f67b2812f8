"""The SFU part (``gw.sfu``): WHEP viewers served by Janus, the direct relay as fallback.

With ``relay.sfu`` configured, a viewer's offer to our WHEP URL (same auth, same
subtree scope) is bridged to a Janus streaming-plugin subscription
(:mod:`gateway.relay.sfu.sdp`); the camera is fed to a Janus mountpoint once
(:class:`~gateway.relay.sfu.feed.RtpFeed`), created on the first viewer and
destroyed ``linger_s`` after the last. Media never passes through Python per viewer.

The direct relay stays the fallback: variants (``low``, ``auto``), sources a browser
cannot take untouched (H.265, B-frames), and any time Janus is down or refuses —
then every Janus viewer is closed at once (its WHEP client re-offers and lands on
the direct relay) and Janus is retried every ``retry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gateway.config import RelaySettings, SfuSettings
from gateway.relay import whep
from gateway.relay.model import IceRestartUnsupported, RelayError, Session
from gateway.relay.sessions import Relay
from gateway.relay.sfu import sdp
from gateway.relay.sfu.feed import RtpFeed
from gateway.relay.sfu.janus import Event, JanusClient, JanusDown, JanusError

log = logging.getLogger(__name__)

WATCH_PERIOD_S = 1.0


@dataclass(eq=False)
class SfuSession:
    """One viewer served by Janus."""

    id: str
    camera_id: str
    caller: str
    etag: str
    handle: int
    feed_key: tuple[str, int]
    remote_ufrag: str
    janus_mid: str
    variant: str | None = None
    codec: str = "h264"
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    closed: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera_id,
            "variant": "main",
            "codec": self.codec,
            "via": "sfu",
            "state": "connected" if self.connected_at else "new",
            "age_s": round(time.monotonic() - self.created, 1),
        }


@dataclass(eq=False)
class Mountpoint:
    """A camera (at one payload type) on Janus: its id, port and RTP feed."""

    id: int
    feed: RtpFeed
    lease: Any
    viewers: set[str] = field(default_factory=set)
    idle_since: float | None = None


class SfuRelay:
    """WHEP sessions through Janus, falling back to ``relay`` (the direct relay)."""

    def __init__(
        self, settings: SfuSettings, relay_settings: RelaySettings, relay: Relay, owner: str
    ) -> None:
        self.sfu = settings
        # Mountpoint descriptions start with this: our own, found again after a restart
        # of either side, never another gateway's on a shared Janus.
        self.tag = f"gw:{owner}:"
        self.settings = relay_settings  # WHEP reads ice_servers from here
        self.direct = relay
        self.rtp_host = settings.rtp_host or urlsplit(settings.url).hostname or "127.0.0.1"
        self.janus = JanusClient(
            settings.url,
            api_secret=settings.api_secret.get_secret_value() if settings.api_secret else None,
            timeout=settings.request_timeout_s,
            on_event=self._on_event,
            on_down=self._on_down,
        )
        self.sessions: dict[str, SfuSession] = {}
        self.mountpoints: dict[tuple[str, int], Mountpoint] = {}
        self.opened = 0
        self.fallbacks: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.down_since: float | None = time.monotonic()
        self.down_reason = "not connected yet"
        self._admin: int | None = None
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._retry_at = 0.0

    @property
    def up(self) -> bool:
        return self.janus.up and self._admin is not None

    # -- part lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        await self._connect()  # a Janus that is down at start is no startup failure
        self._task = asyncio.create_task(self._watch(), name="sfu-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sid in list(self.sessions):
            await self.close(sid, "gateway stopping")
        for key in list(self.mountpoints):
            await self._drop_mountpoint(key)
        await self.janus.aclose()

    async def _connect(self) -> None:
        try:
            await self.janus.connect()
            self._admin = await self.janus.attach()
            await self._sweep()
        except JanusError as err:
            self._admin = None
            self.down_reason = str(err)
            self._retry_at = time.monotonic() + self.sfu.retry_s
            log.warning("SFU unavailable, viewers go direct: %s", err)
            with contextlib.suppress(JanusError):
                await self.janus.close()
            return
        self.down_since = None
        self.down_reason = ""

    async def _sweep(self) -> None:
        """Remove mountpoints of ours left on Janus (our crash, or a Janus that hung)."""
        assert self._admin is not None
        request: dict[str, Any] = {"request": "list"}
        if self.sfu.admin_key is not None:
            request["admin_key"] = self.sfu.admin_key.get_secret_value()
        data = await self.janus.request(self._admin, request)
        stale = [
            m for m in data.get("list") or [] if str(m.get("description", "")).startswith(self.tag)
        ]
        for m in stale:
            with contextlib.suppress(JanusError):
                await self.janus.request(self._admin, self._destroy(int(m["id"])))
        if stale:
            log.info("SFU: removed %d mountpoints left from before", len(stale))

    # -- the WHEP relay interface (api/whep.py) -----------------------------------------
    def get(self, session_id: str) -> SfuSession | Session | None:
        return self.sessions.get(session_id) or self.direct.get(session_id)

    async def open(
        self, camera_id: str, offer_sdp: str, *, variant: str | None = None, caller: str = ""
    ) -> tuple[SfuSession | Session, str]:
        if variant is not None or not self.up:
            self.fallbacks["variant" if variant is not None else "sfu down"] += 1
            return await self.direct.open(camera_id, offer_sdp, variant=variant, caller=caller)
        lease = self.direct._acquire(self._streams(), camera_id, None, "sfu-probe")
        try:
            first = await self.direct._wait_keyframe(camera_id, lease.hub)
            info = lease.hub.info
            if info is None or info.codec != "h264" or info.has_b_frames:
                self.fallbacks["codec"] += 1
                lease.release()
                lease = None
                return await self.direct.open(camera_id, offer_sdp, caller=caller)
            try:
                viewer = sdp.viewer_offer(offer_sdp, whep.profile_level_id_from_annexb(first))
            except sdp.SdpError as err:
                raise whep.OfferError(str(err)) from None
            try:
                mp = await self._mountpoint((camera_id, viewer.pt), viewer.fmtp, lease)
                lease = None  # adopted by the mountpoint, or released there
                return await self._open(camera_id, viewer, caller, mp)
            except JanusError as err:
                log.warning("%s: SFU refused the viewer, serving it directly: %s", camera_id, err)
                self.fallbacks["sfu error"] += 1
                if isinstance(err, JanusDown):
                    self._on_down(str(err))
        finally:
            if lease is not None:
                lease.release()
        return await self.direct.open(camera_id, offer_sdp, caller=caller)

    def _streams(self) -> Any:
        streams = self.direct.gw.part("streams")
        if streams is None:
            raise RelayError("live video is not available: no stream manager")
        return streams

    async def _open(
        self, camera_id: str, viewer: sdp.ViewerOffer, caller: str, mp: Mountpoint
    ) -> tuple[SfuSession, str]:
        key = (camera_id, viewer.pt)
        handle = await self.janus.attach()
        try:
            event = await self.janus.call(handle, {"request": "watch", "id": mp.id})
            jsep = event.get("jsep") or {}
            if jsep.get("type") != "offer":
                raise JanusError("Janus answered watch without an offer")
            janus = sdp.janus_offer(str(jsep.get("sdp", "")))
            if janus.pt != viewer.pt:
                raise JanusError(f"Janus offered payload type {janus.pt}, not {viewer.pt}")
            to_viewer = sdp.answer_for_viewer(viewer, janus)
            to_janus = sdp.answer_for_janus(viewer, janus)
            await self.janus.call(handle, {"request": "start"}, {"type": "answer", "sdp": to_janus})
        except (JanusError, sdp.SdpError) as err:
            if not isinstance(err, JanusDown):  # a hung Janus would keep us waiting
                await self.janus.detach(handle)
            if isinstance(err, sdp.SdpError):
                raise JanusError(f"cannot bridge Janus's offer: {err}") from None
            raise
        sid = secrets.token_urlsafe(12)
        session = SfuSession(
            id=sid,
            camera_id=camera_id,
            caller=caller,
            etag=f'"{secrets.token_hex(8)}"',
            handle=handle,
            feed_key=key,
            remote_ufrag=viewer.ufrag,
            janus_mid=janus.mid,
        )
        self.sessions[sid] = session
        mp.viewers.add(sid)
        mp.idle_since = None
        self.opened += 1
        log.info("%s: viewer %s opened through the SFU (%s)", camera_id, sid, caller)
        return session, to_viewer

    async def _mountpoint(self, key: tuple[str, int], fmtp: str, lease: Any) -> Mountpoint:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            mp = self.mountpoints.get(key)
            if mp is not None and not mp.feed.ended:
                lease.release()
                return mp
            if mp is not None:
                await self._drop_mountpoint(key)
            assert self._admin is not None
            mp_id = secrets.randbelow(2**31 - 1) + 1
            request = {
                "request": "create",
                "type": "rtp",
                "id": mp_id,
                "description": f"{self.tag}{key[0]}",
                "is_private": True,
                "media": [
                    {
                        "type": "video",
                        "mid": "v",
                        "port": 0,
                        "pt": key[1],
                        "codec": "h264",
                        "fmtp": fmtp,
                        "bufferkf": True,  # a late viewer starts on the last keyframe
                    }
                ],
            }
            if self.sfu.admin_key is not None:
                request["admin_key"] = self.sfu.admin_key.get_secret_value()
            try:
                data = await self.janus.request(self._admin, request)
                port = int(data["stream"]["ports"][0]["port"])
            except (KeyError, IndexError, TypeError, ValueError):
                lease.release()
                raise JanusError("Janus created the mountpoint without a port") from None
            except BaseException:
                lease.release()
                raise
            feed = RtpFeed(
                key[0],
                lease.hub,
                self.rtp_host,
                port,
                key[1],
                maxsize=self.direct.gw.settings.streams.subscriber_buffer,
            )
            feed.start()
            mp = Mountpoint(mp_id, feed, lease, idle_since=time.monotonic())
            self.mountpoints[key] = mp
            log.info("%s: fed to the SFU (mountpoint %d, pt %d)", key[0], mp_id, key[1])
            return mp

    async def _drop_mountpoint(self, key: tuple[str, int]) -> None:
        mp = self.mountpoints.pop(key, None)
        if mp is None:
            return
        await mp.feed.stop()
        mp.lease.release()
        if self.up and self._admin is not None:
            with contextlib.suppress(JanusError):
                await self.janus.request(self._admin, self._destroy(mp.id))
        log.info(
            "%s: SFU feed stopped after %d RTP packets (%d bytes)",
            key[0],
            mp.feed.packets_sent,
            mp.feed.bytes_sent,
        )

    def _destroy(self, mp_id: int) -> dict[str, Any]:
        request: dict[str, Any] = {"request": "destroy", "id": mp_id}
        if self.sfu.admin_key is not None:
            request["admin_key"] = self.sfu.admin_key.get_secret_value()
        return request

    async def add_candidates(self, session: SfuSession | Session, frag: str) -> None:
        if isinstance(session, Session):
            await self.direct.add_candidates(session, frag)
            return
        ufrag, candidates, end = sdp.candidates_from_frag(frag)
        if ufrag and ufrag != session.remote_ufrag:
            raise IceRestartUnsupported("ICE restart is not supported; start a new session")
        items = [
            {"sdpMid": session.janus_mid, "sdpMLineIndex": 0, "candidate": f"candidate:{c}"}
            for c in candidates
            if not c.split()[4:5] or not c.split()[4].endswith(".local")
        ]
        try:
            await self.janus.trickle(session.handle, items, end)
        except JanusError as err:
            raise RelayError(f"the SFU did not take the candidates: {err}") from None

    async def close(self, session_id: str, reason: str = "viewer left") -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return await self.direct.close(session_id, reason)
        if session.closed:
            return False
        session.closed = True
        self.closed[reason] += 1
        mp = self.mountpoints.get(session.feed_key)
        if mp is not None:
            mp.viewers.discard(session_id)
            if not mp.viewers:
                mp.idle_since = time.monotonic()
        if self.up:
            with contextlib.suppress(JanusError):
                await self.janus.detach(session.handle)
        log.info(
            "%s: SFU viewer %s closed (%s) after %.1f s",
            session.camera_id,
            session_id,
            reason,
            time.monotonic() - session.created,
        )
        return True

    # -- Janus events ----------------------------------------------------------------
    def _by_handle(self, handle: Any) -> SfuSession | None:
        return next((s for s in self.sessions.values() if s.handle == handle), None)

    def _on_event(self, event: Event) -> None:
        session = self._by_handle(event.get("sender"))
        if session is None:
            return
        kind = event.get("janus")
        if kind == "webrtcup" and session.connected_at is None:
            session.connected_at = time.monotonic()
        elif kind in ("hangup", "detached"):
            self._spawn(self.close(session.id, "viewer disconnected"))

    def _on_down(self, reason: str) -> None:
        """Janus is gone: its viewers are told by their own connections failing; the
        gateway forgets them, stops feeding, and serves new offers directly."""
        self._admin = None
        self.down_since = time.monotonic()
        self.down_reason = reason
        self._retry_at = time.monotonic() + self.sfu.retry_s
        self._spawn(self._forget_all("sfu down"))

    async def _forget_all(self, reason: str) -> None:
        for sid in list(self.sessions):
            await self.close(sid, reason)
        for key in list(self.mountpoints):
            await self._drop_mountpoint(key)
        await self.janus.close()  # stops a long poll still waiting on a hung Janus

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- watchdog --------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            try:
                await self._check()
            except Exception:
                log.exception("SFU watchdog failed")

    async def _check(self) -> None:
        now = time.monotonic()
        if not self.up:
            if now >= self._retry_at:
                await self._connect()
            return
        timeout = self.settings.session_timeout_s
        for session in list(self.sessions.values()):
            if session.connected_at is None and now - session.created > timeout:
                await self.close(session.id, "ICE did not connect")
        for key, mp in list(self.mountpoints.items()):
            if mp.feed.ended:
                for sid in list(mp.viewers):
                    await self.close(sid, "stream ended")
                await self._drop_mountpoint(key)
            elif not mp.viewers and mp.idle_since and now - mp.idle_since >= self.sfu.linger_s:
                await self._drop_mountpoint(key)

    # -- figures --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        status = self.direct.status()
        status["sessions"] = [*status["sessions"], *(s.public() for s in self.sessions.values())]
        status["sfu"] = {
            "kind": self.sfu.kind,
            "up": self.up,
            "down_reason": self.down_reason or None,
            "viewers": len(self.sessions),
            "opened": self.opened,
            "closed": dict(self.closed),
            "fallbacks": dict(self.fallbacks),
            "feeds": [
                mp.feed.public() | {"viewers": len(mp.viewers)} for mp in self.mountpoints.values()
            ],
        }
        return status

    def metrics(self) -> Iterable[Any]:
        from gateway.metrics import Sample

        yield Sample("sfu_up", int(self.up), help="1 when the SFU (Janus) is reachable")
        yield Sample("sfu_viewers", len(self.sessions), help="Viewers served by the SFU")
        yield Sample("sfu_feeds", len(self.mountpoints), help="Cameras fed to the SFU")
        for mp in self.mountpoints.values():
            labels = {"camera": mp.feed.camera_id}
            yield Sample("sfu_feed_bytes_sent", mp.feed.bytes_sent, labels, type="counter")
        for reason, n in self.fallbacks.items():
            yield Sample("sfu_fallbacks_total", n, {"reason": reason}, type="counter")


def build(gw: Any) -> SfuRelay | None:
    """Factory for ``gateway.app._factories``: only with ``relay.sfu`` and a relay."""
    relay = gw.part("relay")
    if gw.settings.relay.sfu is None or relay is None:
        return None
    return SfuRelay(gw.settings.relay.sfu, gw.settings.relay, relay, owner=gw.settings.cascade.id)
