"""The relay part (``gw.relay``): the WHEP session table, limits, teardown, counters.

A session is one viewer: an aiortc peer connection whose only track passes one
hub's access units through, sent from this process or from a relay worker process
(``relay.workers``, :mod:`gateway.relay.pool`); this part keeps admission, the
choice of stream, leases and audit either way (:mod:`gateway.relay.peers`). The hub
comes from the stream manager (``gw.streams.acquire``): the camera's main stream
when browsers can take it as it is, else its transcoded ``h264`` variant, or the
``low`` variant when asked for. ``auto`` (the WHEP default) puts the camera's own
sub-stream before that transcode for a viewer that cannot take the main stream
untouched (H.265 to a viewer without H.265): the camera already made the H.264
picture, so the box need not.

Sessions end when the viewer DELETEs them, when the peer connection fails or
closes, when the stream ends, when ICE never connects, or when a viewer that sent
RTCP falls silent for ``relay.session_timeout_s`` (aioice's consent checks catch
the rest).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiortc.sdp import candidate_from_sdp

from gateway.audit import Audit
from gateway.cameras.registry import Registry
from gateway.config import RelaySettings
from gateway.relay import ice, whep
from gateway.relay.choice import SourceChooser
from gateway.relay.model import (
    IceRestartUnsupported,
    RelayError,
    Session,
    TooManySessions,
)
from gateway.relay.peers import LocalPeers, Peers, PeerSettings
from gateway.relay.pool import WorkerGone, WorkerPool
from gateway.streams.hub import Hub
from gateway.streams.manager import Lease, StreamManager

log = logging.getLogger(__name__)

VARIANTS = (None, "low", "h264", "auto")


class Relay:
    """WHEP sessions of this gateway."""

    def __init__(
        self,
        settings: RelaySettings,
        streams: StreamManager,
        registry: Registry,
        *,
        subscriber_buffer: int,
        audit: Audit | None = None,
        log_level: str = "INFO",
        log_json: bool = False,
    ) -> None:
        self.settings = settings
        self.streams = streams  # every viewer's hub is leased here
        self.subscriber_buffer = subscriber_buffer  # streams.subscriber_buffer, per viewer
        self.audit = audit  # who watched which camera, from when to when
        self.sessions: dict[str, Session] = {}
        self.opened = 0
        self.rejected: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self._tasks: set[asyncio.Future[bool]] = set()
        self._opening = 0  # offers being answered, counted against max_sessions
        self.chooser = SourceChooser(settings, registry, self.rejected)
        self._addresses = (
            ice.resolve_interfaces(self.settings.interfaces) if self.settings.interfaces else None
        )
        peer_settings = PeerSettings(
            ice_servers=tuple(
                (
                    tuple(s.urls),
                    s.username,
                    s.credential.get_secret_value() if s.credential else None,
                )
                for s in settings.ice_servers
            ),
            addresses=tuple(self._addresses) if self._addresses is not None else None,
            resolve_mdns=settings.resolve_mdns,
            burst_bytes_per_s=settings.burst_mbps * 125_000,
            session_timeout_s=settings.session_timeout_s,
            subscriber_buffer=subscriber_buffer,
            shared_rtp=settings.shared_rtp,
            udp_gso=settings.udp_gso,
        )
        # Who sends: this process, or worker processes on every core (relay.workers).
        self.pool = (
            WorkerPool(
                settings.workers,
                peer_settings,
                self._on_peer_closed,
                log_level=log_level,
                log_json=log_json,
            )
            if settings.workers
            else None
        )
        self.peers: Peers = self.pool or LocalPeers(peer_settings, self._on_peer_closed)

    # -- part lifecycle ------------------------------------------------------------
    async def start(self) -> None:
        await self.peers.start()
        log.info(
            "relay ready: host candidates from %s",
            ", ".join(self._addresses) if self._addresses else "all interfaces",
        )

    async def stop(self) -> None:
        await asyncio.gather(
            *(self.close(s.id, "gateway stopping") for s in list(self.sessions.values())),
            return_exceptions=True,
        )
        await self.peers.stop()

    # -- sessions --------------------------------------------------------------------
    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def open(
        self, camera_id: str, offer_sdp: str, *, variant: str | None = "auto", caller: str = ""
    ) -> tuple[Session, str]:
        """Answer a viewer's offer: the new session and the SDP answer.

        ``variant``: ``auto`` (default, see the module docstring), ``None`` for the
        main stream (or its transcode when the viewer cannot take it), ``low``.

        Raises :class:`whep.OfferError` (400), :class:`CameraNotFound` (404) or
        :class:`CameraUnavailable` / :class:`TooManySessions` (503).
        """
        if variant not in VARIANTS:
            raise whep.OfferError(f"unknown variant {variant!r}; use low or auto")
        if len(self.sessions) + self._opening >= self.settings.max_sessions:
            self.rejected["limit"] += 1
            raise TooManySessions(
                f"too many viewers ({self.settings.max_sessions}) / 观看人数已满", retry_after=5
            )
        # Check the offer before touching the camera: a bad offer must not start an ingest.
        desc, h264 = whep.parse_offer(offer_sdp)
        accepts = ({"h264"} if h264 else set()) | ({"hevc"} if whep.offered_h265(desc) else set())
        self._opening += 1
        try:
            return await self._open(camera_id, offer_sdp, variant, caller, accepts)
        finally:
            self._opening -= 1

    async def _open(
        self, camera_id: str, offer_sdp: str, variant: str | None, caller: str, accepts: set[str]
    ) -> tuple[Session, str]:
        sid = secrets.token_urlsafe(12)
        lease, first, variant = await self.chooser.choose(
            self.streams, camera_id, variant, sid, accepts
        )
        hub: Hub = lease.hub
        # The main stream or the camera's own sub-stream go untouched: H.265 stays H.265.
        hevc = variant in (None, "sub") and hub.info is not None and hub.info.codec == "hevc"
        try:
            answer = await self.peers.open(
                sid,
                hub,
                camera_id,
                offer_sdp,
                source_plid=whep.profile_level_id_from_annexb(first),
                h265_profile=(whep.h265_profile_from_annexb(first) or 0) if hevc else None,
            )
        except WorkerGone as err:
            lease.release()
            self.rejected["worker"] += 1
            raise RelayError(f"{err} / 转发进程不可用", retry_after=2) from None
        except BaseException:
            lease.release()
            self.rejected["offer"] += 1
            raise
        desc, _ = whep.parse_offer(offer_sdp)
        video = next(m for m in desc.media if m.kind == "video")
        session = Session(
            id=sid,
            camera_id=camera_id,
            variant=variant,
            codec="h265" if hevc else "h264",
            lease=lease,
            caller=caller,
            etag=f'"{secrets.token_hex(8)}"',
            remote_ufrag=(video.ice.usernameFragment or "") if video.ice else "",
        )
        self.sessions[sid] = session
        self.opened += 1
        if self.peers.stats(sid).state == "closed":  # ended while its answer was on the way
            self._close_soon(session, "connection closed")
        log.info(
            "%s: viewer %s opened (%s, %s, %s)",
            camera_id,
            sid,
            session.variant or "main",
            session.codec,
            caller,
        )
        return session, answer

    # The stream access the SFU relay and the WHIP pusher share (gateway.relay.sfu).
    def acquire(self, camera_id: str, variant: str | None, sid: str) -> Lease:
        return self.chooser.acquire(self.streams, camera_id, variant, sid)

    async def wait_keyframe(self, camera_id: str, hub: Hub, timeout: float | None = None) -> bytes:
        return await self.chooser.wait_keyframe(camera_id, hub, timeout)

    async def add_candidates(self, session: Session, frag: str) -> None:
        """Trickle ICE (PATCH): add the viewer's late candidates."""
        ufrag, _pwd, candidates, end = whep.parse_sdpfrag(frag)
        if ufrag and ufrag != session.remote_ufrag:
            raise IceRestartUnsupported("ICE restart is not supported; start a new session")
        keep: list[tuple[str | None, str]] = []
        for cand_mid, line in candidates:
            bits = line.split()
            if len(bits) > 4 and bits[4].endswith(".local") and not self.settings.resolve_mdns:
                continue
            try:
                candidate_from_sdp(line)  # checked here, whichever process sends
            except Exception:
                raise whep.OfferError(f"bad candidate line: {line[:80]}") from None
            keep.append((cand_mid, line))
        try:
            await self.peers.add_candidates(session.id, keep, end)
        except WorkerGone as err:
            raise RelayError(f"{err} / 转发进程不可用", retry_after=2) from None

    def _on_peer_closed(self, sid: str, reason: str) -> None:
        """The viewer's peer ended on its own (see gateway.relay.peers)."""
        session = self.sessions.get(sid)
        if session is not None:
            self._close_soon(session, reason)

    def _close_soon(self, session: Session, reason: str) -> None:
        if not session.closed:
            task = asyncio.ensure_future(self.close(session.id, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self, session_id: str, reason: str = "viewer left") -> bool:
        """End a session (idempotent); False if there was none."""
        session = self.sessions.pop(session_id, None)
        if session is None or session.closed:
            return False
        session.closed = True
        session.close_reason = reason
        self.closed[reason] += 1
        stats = self.peers.stats(session_id)
        try:
            await self.peers.close(session_id)
        except Exception:
            log.exception("%s: closing viewer %s failed", session.camera_id, session_id)
        finally:
            session.lease.release()
        if self.audit is not None and session.caller:
            self._audit_end(session, reason)
        log.info(
            "%s: viewer %s closed (%s) after %.1f s, %d units sent",
            session.camera_id,
            session_id,
            reason,
            time.monotonic() - session.created,
            stats.units_sent,
        )
        return True

    def _audit_end(self, session: Session, reason: str) -> None:
        assert self.audit is not None
        seconds = time.monotonic() - session.created
        now = time.time()
        self.audit.record(
            session.caller,
            "view_end",
            camera=session.camera_id,
            session=session.id,
            started=now - seconds,
            seconds=round(seconds, 1),
            reason=reason,
        )

    # -- figures --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "sessions": [s.public(self.peers.stats(s.id)) for s in self.sessions.values()],
            "opened": self.opened,
            "closed": dict(self.closed),
            "rejected": dict(self.rejected),
            **({"workers": self.pool.status()} if self.pool is not None else {}),
        }

    def metrics(self) -> Iterable[Any]:
        from gateway.metrics import Sample

        per_camera: Counter[str] = Counter(s.camera_id for s in self.sessions.values())
        yield Sample("relay_sessions", len(self.sessions), help="WHEP viewers now")
        for camera, n in per_camera.items():
            yield Sample("relay_camera_sessions", n, {"camera": camera}, "WHEP viewers per camera")
        yield Sample("relay_sessions_opened_total", self.opened, type="counter")
        for reason, n in self.closed.items():
            yield Sample("relay_sessions_closed_total", n, {"reason": reason}, type="counter")
        for reason, n in self.rejected.items():
            yield Sample("relay_offers_rejected_total", n, {"reason": reason}, type="counter")
        if self.pool is not None:
            yield Sample(
                "relay_workers_running", self.pool.running, help="Relay worker processes alive"
            )
            yield Sample("relay_worker_restarts_total", self.pool.restarts, type="counter")
            yield Sample(
                "relay_worker_feed_drops_total",
                self.pool.feed_drops,
                type="counter",
                help="Access units shed because a relay worker read its feed too slowly",
            )
        sent = sum(self.peers.stats(s.id).bytes_sent for s in self.sessions.values())
        yield Sample("relay_live_bytes_sent", sent, help="Bytes sent to current viewers")
