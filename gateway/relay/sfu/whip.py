"""WHIP out (RFC 9725): the gateway publishes cameras to any WHIP server — MediaMTX,
LiveKit Ingress, Janus behind a WHIP front, a cloud SFU — one upstream per camera.

A publication is one aiortc peer connection whose only track passes the camera's
hub through untouched (H.264, :class:`~gateway.relay.track.PassthroughTrack`): a
``sendonly`` offer POSTed with ``Content-Type: application/sdp`` and the bearer
token, the answer from the ``201``, and the ``Location`` kept to DELETE it. The part
keeps every configured publication up: a refused offer, a failed connection or an
ended stream is retried after ``retry_s``, and each one's state and figures are in
``status()``. The token is a secret: never logged, never in the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from gateway.config import WhipTarget
from gateway.relay.ice import host_addresses
from gateway.relay.sessions import Relay
from gateway.relay.track import PassthroughTrack
from gateway.streams.hub import Hub

log = logging.getLogger(__name__)

SDP = "application/sdp"


class WhipError(Exception):
    """The WHIP server refused or could not be reached (the message says which)."""


class WhipPublisher:
    """One camera published to one WHIP endpoint."""

    def __init__(
        self,
        target: WhipTarget,
        hub: Hub,
        *,
        timeout: float,
        addresses: list[str] | None,
        maxsize: int,
    ) -> None:
        self.target = target
        self.camera_id = target.camera
        self.where = urlsplit(target.url).netloc.rpartition("@")[2]
        self.hub = hub
        self.timeout = timeout
        self.addresses = addresses
        self.track = PassthroughTrack(hub, target.camera, name="whip-out", maxsize=maxsize)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": SDP}
        if self.target.token is not None:
            headers["Authorization"] = f"Bearer {self.target.token.get_secret_value()}"
        return headers

    async def start(self) -> None:
        """Offer, POST, answer. Raises :class:`WhipError`."""
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        h264 = [
            c
            for c in RTCRtpSender.getCapabilities("video").codecs
            if c.mimeType.lower() in ("video/h264", "video/rtx")
        ]
        transceiver.setCodecPreferences(h264)
        with host_addresses(self.addresses):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            async with (
                aiohttp.ClientSession(trust_env=False) as http,
                http.post(
                    self.target.url,
                    data=self.pc.localDescription.sdp,
                    headers=self._headers(),
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as r,
            ):
                body = await r.text()
                if r.status != 201:
                    raise WhipError(f"WHIP server {self.where} refused: HTTP {r.status}")
                location = r.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise WhipError(
                f"WHIP server {self.where} unreachable ({type(err).__name__})"
            ) from None
        self.location = urljoin(self.target.url, location) if location else None
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        except Exception as err:  # aiortc: ValueError / InvalidStateError
            raise WhipError(f"WHIP server {self.where} sent a bad answer: {err}") from None

    async def stop(self) -> None:
        """DELETE the resource (RFC 9725 §4.3) and close the connection."""
        self.track.stop()
        if self.location:
            headers = self._headers()
            headers.pop("Content-Type")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with (
                    aiohttp.ClientSession(trust_env=False) as http,
                    http.delete(
                        self.location,
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=self.timeout),
                    ),
                ):
                    pass
            self.location = None
        await self.pc.close()

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)


class WhipOut:
    """The part (``gw.whip_out``): keeps every ``relay.whip_out`` publication up."""

    def __init__(self, targets: list[WhipTarget], relay: Relay, *, retry_s: float = 5.0) -> None:
        self.targets = targets
        self.relay = relay  # the direct relay: its stream access and host addresses
        self.retry_s = retry_s
        self.publishers: dict[int, WhipPublisher] = {}
        self.errors: dict[int, str] = {}
        self.published = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._keep(i, t), name=f"whip-out:{t.camera}")
            for i, t in enumerate(self.targets)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep(self, i: int, target: WhipTarget) -> None:
        while True:
            lease = None
            publisher = None
            try:
                lease = self.relay.acquire(target.camera, None, "whip-out")
                await self.relay.wait_keyframe(target.camera, lease.hub)
                publisher = WhipPublisher(
                    target,
                    lease.hub,
                    timeout=10.0,
                    addresses=self.relay._addresses,
                    maxsize=self.relay.subscriber_buffer,
                )
                await publisher.start()
                self.publishers[i] = publisher
                self.errors.pop(i, None)
                self.published += 1
                log.info("%s: published over WHIP to %s", target.camera, publisher.where)
                await self._until_over(publisher)
                self.errors[i] = f"publication ended ({publisher.state})"
            except asyncio.CancelledError:
                raise
            except Exception as err:  # WhipError, RelayError (camera offline), …
                self.errors[i] = str(err)
                log.warning("%s: WHIP out: %s; retrying in %g s", target.camera, err, self.retry_s)
            finally:
                self.publishers.pop(i, None)
                if publisher is not None:
                    await asyncio.shield(publisher.stop())
                if lease is not None:
                    lease.release()
            await asyncio.sleep(self.retry_s)

    @staticmethod
    async def _until_over(publisher: WhipPublisher) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            state = publisher.state
            if state in ("failed", "closed") or publisher.track.readyState != "live":
                return
            if state != "connected" and time.monotonic() - started > 30:
                return  # ICE never connected

    def status(self) -> list[dict[str, Any]]:
        out = []
        for i, target in enumerate(self.targets):
            pub = self.publishers.get(i)
            out.append(
                {
                    "camera": target.camera,
                    "server": urlsplit(target.url).netloc.rpartition("@")[2],
                    "state": pub.state if pub else "retrying",
                    "bytes_sent": pub.track.bytes_sent if pub else 0,
                    "error": self.errors.get(i),
                }
            )
        return out

    def metrics(self) -> Iterable[Any]:
        from gateway.metrics import Sample

        for entry in self.status():
            labels = {"camera": entry["camera"], "server": entry["server"]}
            up = int(entry["state"] == "connected")
            yield Sample("whip_out_connected", up, labels, "1 while the WHIP publication is up")
            yield Sample("whip_out_bytes_sent", entry["bytes_sent"], labels, type="counter")
        yield Sample("whip_out_published_total", self.published, type="counter")
