"""The WebRTC half of a viewer: peer connections that send one hub each.

:class:`~gateway.relay.sessions.Relay` decides *whether* and *what* a viewer gets
(admission, the camera's stream, leases, audit); a :class:`Peers` sends it. Two kinds
share this interface:

* :class:`LocalPeers`: aiortc peer connections in this process (``relay.workers: 0``);
  also what each relay worker process runs (:mod:`gateway.relay.worker`);
* :class:`~gateway.relay.pool.WorkerPool`: the same, spread over worker processes so
  that a box's every core sends (``relay.workers: N``).

A peer ends when the viewer's connection fails or closes, when its hub ends, when
ICE never connects, or when a viewer that sent RTCP falls silent for
``session_timeout_s`` (aioice's consent checks catch the rest); the owner hears of
it through ``on_closed(sid, reason)``. :meth:`Peers.close` (the owner's own
teardown) does not call ``on_closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from gateway.relay import dtls, ice, ntp, whep
from gateway.relay.rtp_out import SharedPayloads, install
from gateway.relay.track import PassthroughTrack
from gateway.relay.udp_batch import GsoState
from gateway.streams.hub import Hub

log = logging.getLogger(__name__)

WATCH_PERIOD_S = 1.0
OnClosed = Callable[[str, str], None]


@dataclass(frozen=True)
class PeerSettings:
    """What sending needs to know, plain values only (handed to worker processes)."""

    ice_servers: tuple[tuple[tuple[str, ...], str | None, str | None], ...] = ()
    addresses: tuple[str, ...] | None = None  # host candidates; None: every interface
    resolve_mdns: bool = False
    burst_bytes_per_s: float = 4_000_000
    session_timeout_s: float = 30
    subscriber_buffer: int = 240
    shared_rtp: bool = True  # packetise once per hub (gateway.relay.rtp_out); off: aiortc's
    udp_gso: bool = True  # … and send runs of packets with one system call (udp_batch)

    def rtc_ice_servers(self) -> list[RTCIceServer]:
        return [
            RTCIceServer(urls=list(u), username=n, credential=c) for u, n, c in self.ice_servers
        ]


@dataclass
class PeerStats:
    """One peer's figures, as :meth:`Peers.stats` reports them."""

    state: str = "new"
    units_sent: int = 0
    bytes_sent: int = 0
    dropped: int = 0
    first_unit_after_s: float | None = None
    viewer_reports: bool = False  # RTCP seen from the viewer since connecting

    def as_list(self) -> list[object]:
        return [
            self.state,
            self.units_sent,
            self.bytes_sent,
            self.dropped,
            self.first_unit_after_s,
            self.viewer_reports,
        ]


class Peers(Protocol):
    """Sends hubs to viewers; see the module docstring."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def open(
        self,
        sid: str,
        hub: Hub,
        camera_id: str,
        offer_sdp: str,
        *,
        source_plid: str | None,
        h265_profile: int | None,
    ) -> str:
        """The SDP answer; raises :class:`~gateway.relay.whep.OfferError`."""
        ...

    async def add_candidates(
        self, sid: str, candidates: Sequence[tuple[str | None, str]], end: bool
    ) -> None: ...

    async def close(self, sid: str) -> None: ...

    def stats(self, sid: str) -> PeerStats: ...


@dataclass(eq=False)
class Peer:
    sid: str
    camera_id: str
    pc: RTCPeerConnection
    track: PassthroughTrack
    created: float = field(default_factory=time.monotonic)
    connected_at: float | None = None
    rx_packets: int | None = None  # from the viewer (RTCP), as last seen
    rx_flowing: bool = False
    rx_seen_at: float = field(default_factory=time.monotonic)
    closed: bool = False

    def stats(self) -> PeerStats:
        t = self.track
        return PeerStats(
            state=self.pc.connectionState,
            units_sent=t.units_sent,
            bytes_sent=t.bytes_sent,
            dropped=t.dropped,
            first_unit_after_s=(
                round(t.first_sent_at - self.created, 3) if t.first_sent_at else None
            ),
            viewer_reports=self.rx_flowing,
        )


class LocalPeers:
    """aiortc peer connections in this process."""

    def __init__(self, settings: PeerSettings, on_closed: OnClosed) -> None:
        self.settings = settings
        self.on_closed = on_closed
        self.peers: dict[str, Peer] = {}
        self._watch_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self.payloads = SharedPayloads()
        self.gso = GsoState(settings.udp_gso)
        ice.install()
        dtls.install()
        ntp.install()

    async def start(self) -> None:
        self._watch_task = asyncio.create_task(self._watch(), name="relay-peers-watchdog")

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await asyncio.gather(*(self.close(sid) for sid in list(self.peers)))

    async def open(
        self,
        sid: str,
        hub: Hub,
        camera_id: str,
        offer_sdp: str,
        *,
        source_plid: str | None,
        h265_profile: int | None,
    ) -> str:
        s = self.settings
        pc = RTCPeerConnection(RTCConfiguration(iceServers=s.rtc_ice_servers()))
        track = PassthroughTrack(
            hub,
            camera_id,
            name=f"whep:{sid}",
            maxsize=s.subscriber_buffer,
            burst_bytes_per_s=s.burst_bytes_per_s,
        )
        try:
            answer = await whep.answer(
                pc,
                track,
                offer_sdp,
                source_plid=source_plid,
                h265_profile=h265_profile,
                addresses=list(s.addresses) if s.addresses is not None else None,
                resolve_mdns=s.resolve_mdns,
                camera_id=camera_id,
            )
        except BaseException:
            track.stop()
            await pc.close()
            raise
        if s.shared_rtp:
            for sender in pc.getSenders():
                if sender.track is track:
                    install(sender, track, self.payloads, self.gso)
        peer = Peer(sid, camera_id, pc, track)
        self.peers[sid] = peer
        pc.on("connectionstatechange", lambda: self._on_state(peer))
        track.on("ended", lambda: self._on_track_ended(peer))
        return answer

    async def add_candidates(
        self, sid: str, candidates: Sequence[tuple[str | None, str]], end: bool
    ) -> None:
        peer = self.peers.get(sid)
        if peer is None:
            return
        mid = next((t.mid for t in peer.pc.getTransceivers() if t.kind == "video"), None)
        for cand_mid, line in candidates:
            try:
                cand = candidate_from_sdp(line)
            except Exception:
                raise whep.OfferError(f"bad candidate line: {line[:80]}") from None
            cand.sdpMid = cand_mid or mid
            await peer.pc.addIceCandidate(cand)
        if end:
            await peer.pc.addIceCandidate(None)

    async def close(self, sid: str) -> None:
        peer = self.peers.pop(sid, None)
        if peer is None or peer.closed:
            return
        peer.closed = True
        peer.track.stop()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("%s: closing viewer %s failed", peer.camera_id, sid)

    def stats(self, sid: str) -> PeerStats:
        peer = self.peers.get(sid)
        return peer.stats() if peer is not None else PeerStats(state="closed")

    # -- ending on their own ----------------------------------------------------------
    def _on_state(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        log.debug("%s: viewer %s %s", peer.camera_id, peer.sid, state)
        if state == "connected" and peer.connected_at is None:
            peer.connected_at = time.monotonic()
            peer.rx_seen_at = peer.connected_at
        elif state in ("failed", "closed"):
            self._end_soon(peer, f"connection {state}")

    def _on_track_ended(self, peer: Peer) -> None:
        # The sender stops the track both when the hub ends and when the connection
        # goes away; name the cause that really happened.
        if peer.track.hub.closed:
            self._end_soon(peer, "stream ended")
        else:
            # The sender stopped: the viewer's DTLS went away (closed its page, say)
            # before the connection state caught up.
            self._end_soon(peer, "viewer disconnected")

    def _end_soon(self, peer: Peer, reason: str) -> None:
        if not peer.closed:
            task = asyncio.ensure_future(self._end(peer, reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _end(self, peer: Peer, reason: str) -> None:
        if peer.closed or self.peers.get(peer.sid) is not peer:
            return
        await self.close(peer.sid)
        self.on_closed(peer.sid, reason)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            for peer in list(self.peers.values()):
                try:
                    await self._check(peer)
                except Exception:
                    log.exception("%s: checking viewer %s failed", peer.camera_id, peer.sid)

    async def _check(self, peer: Peer) -> None:
        now = time.monotonic()
        timeout = self.settings.session_timeout_s
        if peer.connected_at is None:
            if now - peer.created > timeout:
                await self._end(peer, "ICE did not connect")
            return
        rx = await _rx_packets(peer.pc)
        if rx != peer.rx_packets:
            peer.rx_flowing = peer.rx_packets is not None
            peer.rx_packets, peer.rx_seen_at = rx, now
        elif peer.rx_flowing and now - peer.rx_seen_at > timeout:
            # Browsers send RTCP every second or so; silence this long means the
            # viewer is gone without saying so. A viewer that never sends RTCP is
            # left to aioice's own consent checks (RFC 7675, about 30 s).
            await self._end(peer, "consent timeout")


async def _rx_packets(pc: RTCPeerConnection) -> int:
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "video":
            continue
        report = await transceiver.sender.getStats()
        for stat in report.values():
            if getattr(stat, "type", "") == "transport":
                return int(stat.packetsReceived)
    return 0
