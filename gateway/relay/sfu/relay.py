"""The SFU part (``gw.sfu``): WHEP viewers served by Janus, the direct relay as fallback.

With ``relay.sfu`` configured, a viewer's offer to our WHEP URL (same auth, same
subtree scope) is bridged to a Janus streaming-plugin subscription
(:mod:`gateway.relay.sfu.sdp`); the camera is fed to a Janus mountpoint once
(:class:`~gateway.relay.sfu.feed.RtpFeed`), created on the first viewer and
destroyed ``linger_s`` after the last. Media never passes through Python per viewer.

Several Janus servers share the load by camera: each camera goes to the first server
that is up in its rendezvous-hash order (``hash(server, camera)``, highest first), so
all gateways agree on it, adding a server moves about 1/N of the cameras, and a
camera's upstream stays one stream.

The direct relay stays the fallback: variants (``low``, ``auto``), sources a browser
cannot take untouched (H.265, B-frames), and any time no Janus is up or Janus
refuses. When a Janus is lost its viewers are forgotten at once (their WHEP clients
see the connection fail and re-offer) and it is retried every ``retry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.config import RelaySettings, SfuSettings
from gateway.media import h264
from gateway.relay import whep
from gateway.relay.model import IceRestartUnsupported, RelayError, Session
from gateway.relay.sessions import Relay
from gateway.relay.sfu import sdp
from gateway.relay.sfu.backend import JanusBackend, Key, Mountpoint
from gateway.relay.sfu.janus import Event, JanusDown, JanusError
from gateway.streams.manager import Lease

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
    backend: JanusBackend
    key: Key
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
            "sfu": self.backend.name,
            "state": "connected" if self.connected_at else "new",
            "age_s": round(time.monotonic() - self.created, 1),
        }


def rank(urls: list[str], camera_id: str) -> list[int]:
    """Indexes of ``urls`` in rendezvous-hash order for ``camera_id`` (best first)."""

    def score(i: int) -> bytes:
        return hashlib.sha256(f"{urls[i]}\n{camera_id}".encode()).digest()

    return sorted(range(len(urls)), key=score, reverse=True)


class SfuRelay:
    """WHEP sessions through Janus servers, falling back to ``relay`` (the direct relay)."""

    def __init__(
        self,
        settings: SfuSettings,
        relay_settings: RelaySettings,
        relay: Relay,
        *,
        owner: str,
        feed_buffer: int,
    ) -> None:
        self.sfu = settings
        self.settings = relay_settings  # WHEP reads ice_servers from here
        self.direct = relay
        # Mountpoint descriptions start with this: our own, found again after a restart
        # of either side, never another gateway's on a shared Janus.
        self.tag = f"gw:{owner}:"
        urls = [settings.url, *settings.more_urls]
        self.backends = [
            JanusBackend(
                url,
                settings,
                tag=self.tag,
                rtp_host=settings.rtp_host if len(urls) == 1 else None,
                feed_buffer=feed_buffer,
                on_event=self._on_event,
                on_down=self._on_down,
            )
            for url in urls
        ]
        self.sessions: dict[str, SfuSession] = {}
        self.opened = 0
        self.fallbacks: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def up(self) -> bool:
        return any(b.up for b in self.backends)

    @property
    def mountpoints(self) -> dict[tuple[str, Key], Mountpoint]:
        return {(b.name, k): mp for b in self.backends for k, mp in b.mountpoints.items()}

    def backend_for(self, camera_id: str) -> JanusBackend | None:
        """The first server that is up in the camera's hash order; None if none is."""
        urls = [b.url for b in self.backends]
        return next((self.backends[i] for i in rank(urls, camera_id) if self.backends[i].up), None)

    # -- part lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        # A Janus that is down at start is no startup failure: viewers go direct.
        await asyncio.gather(*(b.connect() for b in self.backends))
        self._task = asyncio.create_task(self._watch(), name="sfu-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sid in list(self.sessions):
            await self.close(sid, "gateway stopping")
        for backend in self.backends:
            await backend.drop_all()
            await backend.client.aclose()

    # -- the WHEP relay interface (api/whep.py) -----------------------------------------
    def get(self, session_id: str) -> SfuSession | Session | None:
        return self.sessions.get(session_id) or self.direct.get(session_id)

    async def open(
        self, camera_id: str, offer_sdp: str, *, variant: str | None = None, caller: str = ""
    ) -> tuple[SfuSession | Session, str]:
        """Answer a viewer's offer through Janus, or through the direct relay."""
        backend = self.backend_for(camera_id)
        # ``auto`` (the WHEP default) is the SFU's case too: an H.264 main stream through
        # Janus; anything else falls back to the direct relay, which chooses for it.
        if variant not in (None, "auto") or backend is None:
            self.fallbacks["variant" if backend is not None else "sfu down"] += 1
            return await self.direct.open(camera_id, offer_sdp, variant=variant, caller=caller)
        lease: Lease | None  # None once adopted by a mountpoint or released
        lease = self.direct.acquire(camera_id, None, "sfu-probe")
        try:
            first = await self.direct.wait_keyframe(camera_id, lease.hub)
            info = lease.hub.info
            if info is None or info.codec != "h264" or info.has_b_frames:
                self.fallbacks["codec"] += 1
                lease.release()
                lease = None
                return await self.direct.open(camera_id, offer_sdp, variant=variant, caller=caller)
            try:
                viewer = sdp.viewer_offer(offer_sdp, h264.profile_level_id(first))
            except sdp.SdpError as err:
                raise whep.OfferError(str(err)) from None
            viewer.prefer({pt for cam, pt in backend.mountpoints if cam == camera_id})
            try:
                mp = await backend.mountpoint((camera_id, viewer.pt), viewer.fmtp, lease)
                lease = None  # adopted by the mountpoint, or released there
                return await self._open(camera_id, viewer, caller, backend, mp)
            except JanusError as err:
                log.warning("%s: SFU %s refused the viewer: %s", camera_id, backend.name, err)
                self.fallbacks["sfu error"] += 1
                if isinstance(err, JanusDown):
                    backend.mark_down(str(err))
        finally:
            if lease is not None:
                lease.release()
        return await self.direct.open(camera_id, offer_sdp, caller=caller)

    async def _open(
        self,
        camera_id: str,
        viewer: sdp.ViewerOffer,
        caller: str,
        backend: JanusBackend,
        mp: Mountpoint,
    ) -> tuple[SfuSession, str]:
        janus = backend.client
        handle = await janus.attach()
        try:
            event = await janus.call(handle, {"request": "watch", "id": mp.id})
            jsep = event.get("jsep") or {}
            if jsep.get("type") != "offer":
                raise JanusError("Janus answered watch without an offer")
            offer = sdp.janus_offer(str(jsep.get("sdp", "")))
            if offer.pt != viewer.pt:
                raise JanusError(f"Janus offered payload type {offer.pt}, not {viewer.pt}")
            to_viewer = sdp.answer_for_viewer(viewer, offer)
            to_janus = sdp.answer_for_janus(viewer, offer)
            await janus.call(handle, {"request": "start"}, {"type": "answer", "sdp": to_janus})
        except (JanusError, sdp.SdpError) as err:
            if not isinstance(err, JanusDown):  # a hung Janus would keep us waiting
                await janus.detach(handle)
            if isinstance(err, sdp.SdpError):
                raise JanusError(f"cannot bridge Janus's offer: {err}") from None
            raise
        session = SfuSession(
            id=secrets.token_urlsafe(12),
            camera_id=camera_id,
            caller=caller,
            etag=f'"{secrets.token_hex(8)}"',
            handle=handle,
            backend=backend,
            key=(camera_id, viewer.pt),
            remote_ufrag=viewer.ufrag,
            janus_mid=offer.mid,
        )
        self.sessions[session.id] = session
        mp.viewers.add(session.id)
        mp.idle_since = None
        self.opened += 1
        log.info(
            "%s: viewer %s opened through SFU %s (%s)", camera_id, session.id, backend.name, caller
        )
        return session, to_viewer

    async def add_candidates(self, session: SfuSession | Session, frag: str) -> None:
        """Trickle ICE (PATCH): the viewer's late candidates, passed on to Janus."""
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
            await session.backend.client.trickle(session.handle, items, end)
        except JanusError as err:
            raise RelayError(f"the SFU did not take the candidates: {err}") from None

    async def close(self, session_id: str, reason: str = "viewer left") -> bool:
        """End a session (idempotent); False if there was none."""
        session = self.sessions.pop(session_id, None)
        if session is None:
            return await self.direct.close(session_id, reason)
        if session.closed:
            return False
        session.closed = True
        self.closed[reason] += 1
        backend = session.backend
        mp = backend.mountpoints.get(session.key)
        if mp is not None:
            mp.viewers.discard(session_id)
            if not mp.viewers:
                mp.idle_since = time.monotonic()
        if backend.up:
            with contextlib.suppress(JanusError):
                await backend.client.detach(session.handle)
        audit = self.direct.audit
        seconds = time.monotonic() - session.created
        if audit is not None and session.caller:  # who watched what, as for direct viewers
            audit.record(
                session.caller,
                "view_end",
                camera=session.camera_id,
                session=session.id,
                started=time.time() - seconds,
                seconds=round(seconds, 1),
                reason=reason,
                via="sfu",
            )
        log.info(
            "%s: SFU viewer %s closed (%s) after %.1f s",
            session.camera_id,
            session_id,
            reason,
            time.monotonic() - session.created,
        )
        return True

    # -- Janus events ----------------------------------------------------------------
    def _on_event(self, backend: JanusBackend, event: Event) -> None:
        handle = event.get("sender")
        session = next(
            (s for s in self.sessions.values() if s.handle == handle and s.backend is backend),
            None,
        )
        if session is None:
            return
        kind = event.get("janus")
        if kind == "webrtcup" and session.connected_at is None:
            session.connected_at = time.monotonic()
        elif kind in ("hangup", "detached"):
            self._spawn(self.close(session.id, "viewer disconnected"))

    def _on_down(self, backend: JanusBackend) -> None:
        """A Janus is gone: its viewers learn it from their own connections failing; the
        gateway forgets them, stops feeding it, and serves new offers elsewhere."""
        self._spawn(self._forget(backend, "sfu down"))

    async def _forget(self, backend: JanusBackend, reason: str) -> None:
        for session in [s for s in self.sessions.values() if s.backend is backend]:
            await self.close(session.id, reason)
        await backend.drop_all()
        await backend.client.close()  # stops a long poll still waiting on a hung Janus

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- watchdog --------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            for backend in self.backends:
                try:
                    await self._check(backend)
                except Exception:
                    log.exception("SFU %s: watchdog failed", backend.name)

    async def _check(self, backend: JanusBackend) -> None:
        now = time.monotonic()
        if not backend.up:
            if now >= backend.retry_at:
                await backend.connect()
            return
        timeout = self.settings.session_timeout_s
        for session in [s for s in self.sessions.values() if s.backend is backend]:
            if session.connected_at is None and now - session.created > timeout:
                await self.close(session.id, "ICE did not connect")
        for key, mp in list(backend.mountpoints.items()):
            if mp.feed.ended:
                for sid in list(mp.viewers):
                    await self.close(sid, "stream ended")
                await backend.drop(key)
            elif not mp.viewers and mp.idle_since and now - mp.idle_since >= self.sfu.linger_s:
                await backend.drop(key)

    # -- figures --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        status = self.direct.status()
        status["sessions"] = [*status["sessions"], *(s.public() for s in self.sessions.values())]
        servers = [b.public() for b in self.backends]
        status["sfu"] = {
            "kind": self.sfu.kind,
            "up": self.up,
            "down_reason": next((s["down_reason"] for s in servers if s["down_reason"]), None),
            "servers": servers,
            "viewers": len(self.sessions),
            "opened": self.opened,
            "closed": dict(self.closed),
            "fallbacks": dict(self.fallbacks),
            "feeds": [feed for s in servers for feed in s["feeds"]],
        }
        return status

    def metrics(self) -> Iterable[Any]:
        from gateway.metrics import Sample

        yield Sample("sfu_up", int(self.up), help="1 when an SFU (Janus) is reachable")
        for b in self.backends:
            yield Sample("sfu_server_up", int(b.up), {"server": b.name})
        yield Sample("sfu_viewers", len(self.sessions), help="Viewers served by the SFU")
        yield Sample("sfu_feeds", len(self.mountpoints), help="Cameras fed to the SFU")
        for b in self.backends:
            for mp in b.mountpoints.values():
                labels = {"camera": mp.feed.camera_id, "server": b.name}
                yield Sample("sfu_feed_bytes_sent", mp.feed.bytes_sent, labels, type="counter")
        for reason, n in self.fallbacks.items():
            yield Sample("sfu_fallbacks_total", n, {"reason": reason}, type="counter")
