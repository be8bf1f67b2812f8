"""In-process pieces for relay tests and benchmarks.

:class:`EncodedCamera` encodes synthetic frames (with the sim's wall-clock barcode)
with libx264 in a thread and publishes them to a real :class:`Hub` in real time.
:class:`HubStreams` offers ``acquire()`` over such hubs the way ``gw.streams`` does,
so the relay can be tested on its own. :class:`WhepClient` is a small aiortc WHEP
client (not our page) that records what it decodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.relay.ice import host_addresses
from gateway.sim import barcode
from gateway.streams.hub import Hub


class EncodedCamera:
    """A synthetic H.264 camera publishing to ``hub`` from its own thread."""

    def __init__(
        self,
        hub: Hub,
        *,
        width: int = 640,
        height: int = 360,
        fps: int = 25,
        gop: int = 25,
        index: int = 7,
        bitrate: int = 1_000_000,
        profile: str = "high",
    ) -> None:
        self.hub = hub
        self.width, self.height, self.fps, self.gop = width, height, fps, gop
        self.index = index
        self.bitrate = bitrate
        self.profile = profile
        self.epoch = 0
        self.frames = 0
        self.online = threading.Event()
        self.online.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cam-{index}", daemon=True)

    def start(self) -> EncodedCamera:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def go_offline(self) -> None:
        self.online.clear()

    def go_online(self) -> None:
        self.online.set()

    def _encoder(self) -> av.CodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self.width, self.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 90000)
        ctx.framerate = Fraction(self.fps, 1)
        ctx.gop_size = self.gop
        ctx.max_b_frames = 0
        ctx.bit_rate = self.bitrate
        ctx.profile = self.profile
        # repeat-headers: SPS/PPS before every keyframe, as the hub contract wants.
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"repeat-headers=1:keyint={self.gop}:min-keyint={self.gop}:scenecut=0",
        }
        ctx.open()
        return ctx

    def _picture(self, n: int) -> np.ndarray:
        h, w = self.height, self.width
        buf = np.full((h * 3 // 2, w), 128, np.uint8)
        luma = buf[:h]
        luma[:] = 60
        x = (n * 8) % max(w - 64, 1)
        luma[h // 2 : h // 2 + 64, x : x + 64] = 220  # a moving square
        barcode.encode(buf, int(time.time() * 1000), self.index, height=h)
        return buf

    def _run(self) -> None:
        period = 1 / self.fps
        while not self._stop.is_set():
            self.online.wait(0.2)
            if not self.online.is_set():
                continue
            self.epoch += 1  # a (re)connection: timestamps restart
            ctx = self._encoder()
            n = 0
            next_at = time.monotonic()
            while self.online.is_set() and not self._stop.is_set():
                frame = av.VideoFrame.from_ndarray(self._picture(self.frames), format="yuv420p")
                frame.pts = n * 90000 // self.fps
                frame.time_base = Fraction(1, 90000)
                for packet in ctx.encode(frame):
                    self._publish(packet, ctx)
                n += 1
                self.frames += 1
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
            self.hub.clear_gop()

    def _publish(self, packet: av.Packet, ctx: av.CodecContext) -> None:
        if self.hub.info is None:
            self.hub.set_info(
                StreamInfo(
                    codec="h264",
                    width=self.width,
                    height=self.height,
                    fps=self.fps,
                    profile=self.profile,
                    gop=self.gop,
                )
            )
        self.hub.publish(
            AccessUnit(
                data=bytes(packet),
                pts=packet.pts,
                dts=packet.dts,
                time_base=Fraction(1, 90000),
                keyframe=packet.is_keyframe,
                wallclock=time.time(),
                epoch=self.epoch,
            )
        )


@dataclass
class Lease:
    hub: Hub
    owner: HubStreams
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.owner.leases -= 1


class MainOnly:
    """``streams.cameras`` of :class:`HubStreams`: no camera has a sub-stream of its own."""

    def effective_profile(self, camera_id: str, profile: str) -> str:
        return "main"


@dataclass
class HubStreams:
    """``acquire()`` over fixed hubs, keyed by (camera, variant)."""

    hubs: dict[tuple[str, str | None], Hub] = field(default_factory=dict)
    leases: int = 0
    cameras: MainOnly = field(default_factory=MainOnly)

    def acquire(
        self, camera_id: str, profile: str = "main", variant: str | None = None, consumer: str = ""
    ) -> Lease:
        if not any(cam == camera_id for cam, _ in self.hubs):
            raise KeyError(camera_id)
        hub = self.hubs.get((camera_id, variant))
        if hub is None:
            raise RuntimeError(f"no {variant} variant")
        self.leases += 1
        return Lease(hub, self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def install_streams(gw: Any, streams: Any) -> None:
    """Put ``streams`` in place of the gateway's stream manager, before ``gw.start()``.

    The parts that lease hubs hold the manager they were built with; they get ``streams``
    instead, and the gateway starts and stops ``streams`` instead of its own manager.
    """
    gw.parts["streams"] = streams
    gw.streams = streams
    gw.relay.streams = streams
    gw.motion.streams = streams


@dataclass
class Received:
    frames: int = 0
    first_at: float | None = None
    indexes: set[int] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    ended: bool = False


class WhepClient:
    """A minimal WHEP client on aiortc: offer, POST, answer, decode."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        *,
        decode_every: int = 1,
        addresses: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.http = http
        self.url = url
        self.addresses = addresses  # host candidates offered
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.received = Received()
        self.location: str | None = None
        self.answer = ""
        self.started_at = 0.0
        self._decode_every = decode_every
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, headers: dict[str, str] | None = None) -> httpx.Response:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", lambda track: self._on_track(track))
        offer = await self.pc.createOffer()
        with host_addresses(list(self.addresses)):
            await self.pc.setLocalDescription(offer)
        self.started_at = time.monotonic()
        r = await self.http.post(
            self.url,
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", **(headers or {})},
        )
        if r.status_code == 201:
            self.location = r.headers["location"]
            self.answer = r.text
            await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        return r

    def _on_track(self, track: Any) -> None:
        self._task = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        rec = self.received
        try:
            while True:
                frame = await track.recv()
                rec.frames += 1
                if rec.first_at is None:
                    rec.first_at = time.monotonic()
                rec.sizes.add((frame.width, frame.height))
                if rec.frames % self._decode_every == 0:
                    luma = np.frombuffer(frame.planes[0], np.uint8).reshape(
                        frame.height, frame.planes[0].line_size
                    )[:, : frame.width]
                    code = barcode.decode(luma)
                    if code is not None:
                        ms, index = code
                        rec.indexes.add(index)
                        rec.latencies_ms.append(time.time() * 1000 - ms)
        except Exception:
            rec.ended = True

    async def wait_frames(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.received.frames < n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.received.frames >= n

    async def stop(self, *, delete: bool = True) -> None:
        if delete and self.location:
            await self.http.delete(self.location)
        if self._task:
            self._task.cancel()
        await self.pc.close()


@contextlib.asynccontextmanager
async def whep_rig(
    data_dir: Path, relay: dict[str, Any], *, camera: str = "cam-01", index: int = 7
) -> AsyncIterator[dict[str, Any]]:
    """A gateway in this process (auth off) whose one camera is an :class:`EncodedCamera`
    (barcode ``index``) on a hub, served through the real API; ``client()`` makes WHEP
    viewers of it, all stopped at the end."""
    from gateway.api.server import create_app
    from gateway.app import Gateway
    from gateway.config import Settings

    settings = Settings.model_validate(
        {"data_dir": str(data_dir), "auth": {"enabled": False}, "relay": relay}
    )
    gw = Gateway(settings)
    hub = Hub(f"{camera}/main")
    source = EncodedCamera(hub, gop=25, index=index).start()
    streams = HubStreams({(camera, None): hub})
    install_streams(gw, streams)
    app = create_app(gw, manage_lifecycle=False)
    await gw.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    clients: list[WhepClient] = []

    def client() -> WhepClient:
        c = WhepClient(http, f"/api/v1/streams/{camera}/whep")
        clients.append(c)
        return c

    try:
        yield {
            "gw": gw,
            "hub": hub,
            "camera": source,
            "streams": streams,
            "http": http,
            "client": client,
        }
    finally:
        for c in clients:
            await c.stop(delete=False)
        source.stop()
        await gw.stop()
        await http.aclose()
