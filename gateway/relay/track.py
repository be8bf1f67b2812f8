"""Passthrough video track: access units from a hub, as ``av.Packet`` for aiortc.

aiortc's ``RTCRtpSender`` hands anything that is not an ``av.Frame`` to the codec's
``pack()`` without encoding, so returning Annex B packets with ``pts`` and
``time_base`` set is all passthrough needs (docs/architecture.md, pitfalls).

Timestamps: the camera's clock restarts at every reconnect (a new ``epoch``) and
may jump, while RTP needs one steady clock per sender. :class:`RebasingClock` maps
every source onto one monotonic 90 kHz timeline.

Start-up burst: a new subscriber gets the hub's cached GOP at once (up to a GOP of
frames that are already old). Sent with their true spacing, the browser's jitter
buffer would schedule the last of them a GOP late and keep that delay; so the
frames queued when sending starts are squeezed together (1 ms apart) and paced by
bytes so the burst does not overflow the receiver's socket buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from fractions import Fraction

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.media.access_unit import AccessUnit
from gateway.streams.hub import Hub, HubClosed, Subscription

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
TIME_BASE = Fraction(1, CLOCK_RATE)
SQUEEZE_TICKS = 90  # 1 ms between frames of the start-up burst
MAX_STEP_S = 5.0  # a larger forward step within one epoch is a jump, not time passing


class RebasingClock:
    """Maps (epoch, pts) of any source onto one monotonic 90 kHz timeline.

    Within an epoch the output follows the source's own pts differences (smoother
    than arrival times). At a new epoch, or when the source jumps backwards or more
    than ``MAX_STEP_S`` forwards, the output advances by the wall-clock time between
    the two access units' arrivals instead, so an outage shows up as the real gap.
    """

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._anchor_src = 0
        self._anchor_out = 0
        self._last_src = 0
        self._last_out = -1
        self._last_wall = 0.0

    @staticmethod
    def _ticks(au: AccessUnit) -> int:
        return int(au.pts * au.time_base * CLOCK_RATE)

    def _anchor(self, src: int, out: int) -> None:
        self._anchor_src, self._anchor_out = src, out

    def rebase(self, au: AccessUnit, *, squeeze: bool = False) -> int:
        """The output pts for ``au``; ``squeeze`` places it just after the previous one."""
        src = self._ticks(au)
        if self._epoch is None:
            out = 0
            self._anchor(src, out)
        elif squeeze:
            out = self._last_out + SQUEEZE_TICKS
            self._anchor(src, out)
        else:
            step = src - self._last_src
            if au.epoch != self._epoch or step < 0 or step > MAX_STEP_S * CLOCK_RATE:
                gap = max(au.wallclock - self._last_wall, 0.0)
                out = self._last_out + max(int(gap * CLOCK_RATE), SQUEEZE_TICKS)
                self._anchor(src, out)
            else:
                out = self._anchor_out + (src - self._anchor_src)
                if out <= self._last_out:  # equal pts: keep strictly rising
                    out = self._last_out + 1
                    self._anchor(src, out)
        self._epoch = au.epoch
        self._last_src = src
        self._last_out = out
        self._last_wall = au.wallclock
        return out


class PassthroughTrack(MediaStreamTrack):
    """A video track that sends a hub's access units untouched.

    It subscribes to the hub on the first ``recv`` — when aiortc starts sending,
    after ICE and DTLS are up — so a viewer that never connects holds no buffer and
    a viewer that does starts on the freshest cached GOP. Stopping the track leaves
    the hub. When the hub closes the track ends (``recv`` raises
    ``MediaStreamError``), which stops the sender; the track's ``ended`` event lets
    the session owner tear the peer connection down.
    """

    kind = "video"

    def __init__(
        self,
        hub: Hub,
        camera_id: str,
        *,
        name: str = "",
        maxsize: int = 240,
        burst_bytes_per_s: float = 4_000_000,
    ) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.hub = hub
        self.subscription: Subscription | None = None
        self._name = name
        self._maxsize = maxsize
        self.clock = RebasingClock()
        self.units_sent = 0
        self.bytes_sent = 0
        self.first_sent_at: float | None = None
        self.last_sent_at: float | None = None
        self._burst_left: int | None = None  # None until the first recv()
        self._burst_rate = burst_bytes_per_s
        self._burst_next = 0.0

    async def recv(self) -> av.Packet:
        au, pts = await self.next_unit()
        packet = av.Packet(au.data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = TIME_BASE
        return packet

    async def next_unit(self) -> tuple[AccessUnit, int]:
        """The next access unit to send and its pts on this viewer's 90 kHz timeline.

        :mod:`gateway.relay.rtp_out` sends these without an ``av.Packet`` per viewer;
        :meth:`recv` wraps them for aiortc's own sender.
        """
        if self.readyState != "live":
            raise MediaStreamError
        if self.subscription is None:
            self.subscription = self.hub.subscribe(self._name, maxsize=self._maxsize)
        try:
            au = await self.subscription.get()
        except HubClosed:
            if self.readyState == "live":  # the hub ended, not us
                log.info("%s: stream closed, ending the viewer's track", self.camera_id)
            self.stop()
            raise MediaStreamError from None
        if self._burst_left is None:
            # Everything queued now is old: the cached GOP plus what arrived while
            # ICE and DTLS were connecting.
            self._burst_left = self.subscription.qsize
            self._burst_next = time.monotonic()
        squeeze = False
        if self._burst_left > 0:
            self._burst_left -= 1
            squeeze = self.units_sent > 0
            delay = self._burst_next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._burst_next = max(self._burst_next, time.monotonic()) + len(au.data) / (
                self._burst_rate
            )
        pts = self.clock.rebase(au, squeeze=squeeze)
        now = time.monotonic()
        if self.first_sent_at is None:
            self.first_sent_at = now
        self.last_sent_at = now
        self.units_sent += 1
        self.bytes_sent += len(au.data)
        return au, pts

    @property
    def dropped(self) -> int:
        """Access units the hub dropped for this viewer (it was too slow)."""
        return self.subscription.dropped if self.subscription else 0

    def stop(self) -> None:
        super().stop()
        if self.subscription is not None:
            self.subscription.close()
