"""One camera fed to the SFU: the hub's access units as plain RTP (H.264, RFC 6184)
to a Janus streaming mountpoint, whatever the number of viewers behind it.

The access units pass untouched (Annex B split into NAL units, packetised by
aiortc's H.264 packetiser); timestamps follow the relay's rebasing clock, so a
camera reconnect shows up as a gap, never as time running backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from typing import Any

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.rtp import RtpPacket
from pylibsrtp import Policy, Session

from gateway.relay.track import TIME_BASE, RebasingClock
from gateway.streams.hub import Hub, HubClosed

log = logging.getLogger(__name__)


class RtpFeed:
    """Sends one hub to ``(host, port)`` over UDP; counts what it sent.

    ``packets_sent`` / ``bytes_sent`` (RTP packets, headers and SRTP tag included)
    are the gateway's upstream to the SFU for this camera.
    """

    def __init__(
        self,
        camera_id: str,
        hub: Hub,
        host: str,
        port: int,
        payload_type: int,
        *,
        maxsize: int,
        srtp_key: bytes | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.hub = hub
        self.dest = (host, port)
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32)
        self.packets_sent = 0
        self.bytes_sent = 0
        self.units_sent = 0
        self.errors = 0
        self.started = time.monotonic()
        self.ended = False
        self._maxsize = maxsize
        self._seq = secrets.randbits(16)
        self._clock = RebasingClock()
        self._encoder = H264Encoder()
        self._sock: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        # SRTP (AES_CM_128_HMAC_SHA1_80, the SDES key Janus was given) or plain RTP.
        self._srtp = (
            Session(
                policy=Policy(
                    key=srtp_key,
                    ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
                )
            )
            if srtp_key
            else None
        )

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.dest[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self._task = asyncio.create_task(self._run(), name=f"sfu-feed:{self.camera_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _run(self) -> None:
        sub = self.hub.subscribe(f"sfu:{self.camera_id}", maxsize=self._maxsize)
        try:
            while True:
                au = await sub.get()
                pts = self._clock.rebase(au)
                packet = av.Packet(au.data)
                packet.pts = pts
                packet.dts = pts
                packet.time_base = TIME_BASE
                payloads, timestamp = self._encoder.pack(packet)
                self._send(payloads, timestamp)
                self.units_sent += 1
        except HubClosed:
            log.info("%s: stream ended, SFU feed stops", self.camera_id)
        except Exception:
            self.errors += 1
            log.exception("%s: SFU feed failed", self.camera_id)
        finally:
            self.ended = True
            sub.close()

    def _send(self, payloads: list[bytes], timestamp: int) -> None:
        assert self._sock is not None
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            rtp = RtpPacket(
                payload_type=self.payload_type,
                marker=1 if i == last else 0,
                sequence_number=self._seq,
                timestamp=timestamp & 0xFFFFFFFF,
                ssrc=self.ssrc,
                payload=payload,
            )
            self._seq = (self._seq + 1) & 0xFFFF
            data = rtp.serialize()
            if self._srtp is not None:
                data = self._srtp.protect(data)
            try:
                self._sock.sendto(data, self.dest)
            except (BlockingIOError, OSError):
                # UDP: a full buffer or an unreachable SFU loses this packet, as the
                # network would; counted, never fatal (Janus asks viewers' NACKs).
                self.errors += 1
                continue
            self.packets_sent += 1
            self.bytes_sent += len(data)

    def public(self) -> dict[str, Any]:
        return {
            "camera": self.camera_id,
            "payload_type": self.payload_type,
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "units_sent": self.units_sent,
            "send_errors": self.errors,
        }
