"""PsMediaBackend under pressure: a platform that stops reading, a camera that goes away.

The camera here is a synthetic hub source (large frames at a high rate, no codec
work) so a full TCP window is reached within a second on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Settings
from gateway.gb28181.media_api import MediaError, MediaRequest
from gateway.gb28181.ps import rtp
from gateway.gb28181.ps.backend import PsMediaBackend
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.streams.hub import Hub, Subscription
from gateway.streams.manager import StreamManager
from gateway.streams.source import ONLINE, StreamSource
from tests.ps_support import parse_ps, rtp_to_ps, split_rfc4571
from tests.rtsp_support import until

HOST = "127.0.184.1"
CAMERA = "remote/cam"  # a path: served by the resolver below, like a child's camera
FRAME_BYTES = 60_000
FPS, GOP = 50, 10
SSRC = 1_100_000_001
PARAMS = b"\x00\x00\x00\x01\x67\x42\x00\x1f\x00\x00\x00\x01\x68\xce"  # SPS, PPS


class SyntheticSource(StreamSource):
    """Publishes big H.264-looking access units at FPS while ``publishing`` is set."""

    kind = "synthetic"

    def __init__(self, inband: bool = True, frame_bytes: int = FRAME_BYTES) -> None:
        super().__init__(CAMERA)
        self.publishing = True
        self.published = 0
        self.inband = inband  # parameter sets in the keyframes, else only in extradata
        self._body = os.urandom(frame_bytes)

    async def run(self, hub: Hub) -> None:
        hub.set_info(StreamInfo("h264", 320, 180, FPS, extradata=PARAMS))
        self.state = ONLINE
        while True:
            if self.publishing:
                i = self.published
                key = i % GOP == 0
                head = PARAMS if key and self.inband else b""
                nal = b"\x00\x00\x00\x01" + (b"\x65" if key else b"\x41")
                data = head + nal + self._body
                hub.publish(
                    AccessUnit(data, i * 1800, i * 1800, Fraction(1, 90000), key, time.time())
                )
                self.published += 1
            await asyncio.sleep(1 / FPS)


@contextlib.asynccontextmanager
async def backend_for(
    inband: bool = True, frame_bytes: int = FRAME_BYTES, **kwargs: Any
) -> AsyncIterator[tuple[PsMediaBackend, SyntheticSource]]:
    source = SyntheticSource(inband, frame_bytes)
    streams = StreamManager(Settings(streams={"linger_s": 0}))
    streams.add_resolver(lambda cid, profile: source if cid == CAMERA else None)
    await streams.start()
    backend = PsMediaBackend(streams, **kwargs)
    try:
        yield backend, source
    finally:
        await backend.stop()
        await streams.stop()


async def connect_slow(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A platform connection with a tiny receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return await asyncio.open_connection(sock=sock, limit=16 * 1024)


async def _watch(viewer: Subscription) -> None:
    """A consumer that keeps up (a WHEP viewer, the recorder)."""
    while True:
        await viewer.get()


async def recv(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    return await asyncio.get_running_loop().sock_recv(sock, 2048)


def listen_request(call_id: str = "slow-1") -> MediaRequest:
    return MediaRequest(call_id, CAMERA, "main", HOST, 0, SSRC, "tcp-listen", local_host=HOST)


async def test_platform_that_stops_reading_drops_to_keyframes_and_loses_its_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rtp, "CLOSE_GRACE_S", 0.5)
    limit = 256 * 1024
    ended: list[tuple[str, str]] = []
    async with backend_for(
        max_buffered_bytes=limit, stall_timeout_s=2.0, on_ended=lambda *a: ended.append(a)
    ) as (backend, source):
        session = await backend.open(listen_request())
        assert session.local_host == HOST
        # Another consumer of the same camera, to show the stalled platform slows nobody.
        lease = backend.streams.acquire(CAMERA, consumer="viewer")
        viewer = lease.hub.subscribe("viewer", maxsize=100)
        watching = asyncio.create_task(_watch(viewer))
        reader, writer = await connect_slow(HOST, session.local_port)
        stream = backend._streams[session.call_id]
        peak = 0

        def dropping() -> bool:
            nonlocal peak
            peak = max(peak, stream.sink.buffered())
            return stream.frames_dropped > 0

        await until(dropping, 15, "frames dropped for the stalled platform")

        def gone() -> bool:
            dropping()  # keep sampling our buffer until the end
            return bool(ended)

        await until(gone, 20, "the stream to end")
        assert ended == [(session.call_id, "the platform stopped reading for 2 s")]
        assert peak <= limit + 2 * FRAME_BYTES, f"our buffer grew to {peak} bytes"
        assert backend.playing() == 0 and backend.ended["platform-stalled"] == 1
        assert viewer.dropped == 0 and viewer.qsize + viewer.delivered >= source.published - 2
        assert not viewer.closed
        watching.cancel()
        consumers = [c for row in backend.streams.stats() for c in row["consumers"]]
        assert not any(c.startswith("gb28181:") for c in consumers), consumers
        viewer.close()
        lease.release()
        # Our side of the connection goes away though the platform still reads nothing:
        # its unsent bytes are not kept for it.
        await until(lambda: stream.sink.lost is not None, 10, "our socket to close")
        async with asyncio.timeout(20):
            with contextlib.suppress(ConnectionError):
                while await reader.read(1 << 16):
                    pass
        writer.close()


async def test_platform_that_reads_again_resumes_on_a_keyframe() -> None:
    async with backend_for(max_buffered_bytes=128 * 1024, stall_timeout_s=10.0) as (backend, _):
        session = await backend.open(listen_request("slow-2"))
        reader, writer = await connect_slow(HOST, session.local_port)
        stream = backend._streams[session.call_id]
        await until(lambda: stream.frames_dropped > 0, 15, "frames dropped")
        dropped = stream.frames_dropped
        received = bytearray()

        async def read() -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(1 << 16):
                    received.extend(chunk)

        task = asyncio.create_task(read())
        sent = stream.frames_sent
        await until(lambda: stream.frames_sent > sent + 3 * GOP, 15, "sending again")
        await backend.close(session.call_id)
        await asyncio.wait_for(task, 10)
        writer.close()
    packets, _ = split_rfc4571(bytes(received))
    frames = parse_ps(rtp_to_ps(packets, SSRC))
    step = 90000 // FPS
    gaps = [i for i in range(1, len(frames)) if frames[i].dts - frames[i - 1].dts != step]
    assert gaps, "the stalled span left a gap"
    for i in gaps:  # after every gap the stream restarts on a keyframe (with its PSM)
        assert frames[i].stream_type == 0x1B and frames[i].payload.find(b"\x65") < 20
    assert dropped > 0 and stream.frames_dropped >= dropped


async def test_camera_that_stops_or_goes_away_ends_the_stream_with_a_reason() -> None:
    ended: list[tuple[str, str]] = []
    async with backend_for(stall_timeout_s=1.0, on_ended=lambda *a: ended.append(a)) as (
        backend,
        source,
    ):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind((HOST, 0))
        port = receiver.getsockname()[1]
        try:
            req = MediaRequest("gone-1", CAMERA, "main", HOST, port, SSRC, "udp")
            await backend.open(req)
            await backend.open(MediaRequest("gone-2", CAMERA, "main", HOST, port, SSRC, "udp"))
            first = await asyncio.wait_for(recv(receiver), 10)
            assert first[12:16] == b"\x00\x00\x01\xba"  # a pack on the wire
            source.publishing = False
            await until(lambda: len(ended) == 2, 10, "both streams to end")
            assert {r for _, r in ended} == {"no video from the camera for 1 s"}
            source.publishing = True
            await backend.open(MediaRequest("gone-3", CAMERA, "main", HOST, port, SSRC, "udp"))
            hub = backend.streams.hub(CAMERA)
            assert hub is not None
            hub.close()  # the camera's stream ends for everyone
            await until(lambda: len(ended) == 3, 10, "the third stream to end")
            assert ended[2] == ("gone-3", "the camera stream ended")
            assert dict(backend.ended) == {"camera-stalled": 2, "camera-ended": 1}
            assert backend.playing() == 0
        finally:
            receiver.close()


async def test_keyframes_carry_parameter_sets_even_when_the_camera_sent_them_only_once() -> None:
    # Small frames: UDP on a busy machine must not lose any (the reader checks sequence).
    async with backend_for(inband=False, frame_bytes=2000) as (backend, _):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        receiver.bind((HOST, 0))
        try:
            req = MediaRequest("params-1", CAMERA, "main", HOST, receiver.getsockname()[1],
                               SSRC, "udp")  # fmt: skip
            await backend.open(req)
            packets = []
            while sum(p[1] >> 7 for p in packets) < 2 * GOP:
                packets.append(await asyncio.wait_for(recv(receiver), 10))
        finally:
            receiver.close()
    frames = parse_ps(rtp_to_ps(packets, SSRC))
    keys = [f for f in frames if f.stream_type is not None]
    assert len(keys) >= 2
    for frame in frames:
        assert frame.payload.startswith(PARAMS) is (frame.stream_type is not None)


async def test_platform_that_never_connects_or_a_close_during_open_leaks_nothing() -> None:
    ended: list[tuple[str, str]] = []
    async with backend_for(
        accept_timeout_s=0.5, keyframe_wait_s=1.0, on_ended=lambda *a: ended.append(a)
    ) as (
        backend,
        source,
    ):
        await backend.open(listen_request("nobody-1"))
        await until(lambda: bool(ended), 10, "the accept timeout")
        assert ended[0][0] == "nobody-1" and "did not connect" in ended[0][1]
        # A BYE that arrives while the stream is still being opened (no video yet).
        source.publishing = False
        hub = backend.streams.hub(CAMERA)  # None when the ingest stopped with the last lease
        if hub is not None:
            hub.clear_gop()
        opening = asyncio.create_task(backend.open(listen_request("bye-early")))
        await asyncio.sleep(0.2)
        await backend.close("bye-early")
        source.publishing = True
        with pytest.raises(MediaError, match="call ended"):
            await opening
        assert backend.playing() == 0
        # The same while the camera is offline: the open fails on its own, and the call
        # id is not left marked as closed.
        source.publishing = False
        await until(lambda: backend.streams.hub(CAMERA) is None, 5, "the ingest to stop")
        opening = asyncio.create_task(backend.open(listen_request("bye-offline")))
        await asyncio.sleep(0.2)
        await backend.close("bye-offline")
        with pytest.raises(MediaError, match="offline"):
            await opening
        source.publishing = True
        again = await backend.open(listen_request("bye-offline"))
        assert backend.playing() == 1
        await backend.close(again.call_id)
        assert backend.playing() == 0
        consumers = [c for row in backend.streams.stats() for c in row["consumers"]]
        assert not any(c.startswith("gb28181:") for c in consumers), consumers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.fixed_dictionaries(
        {
            "call_id": st.one_of(st.just("c1"), st.text(max_size=40)),
            "camera_id": st.sampled_from([CAMERA, "nope", "", "../etc", "a/b/c", "cam\x00"]),
            "profile": st.sampled_from(["main", "sub", "", "x" * 100, "ma in"]),
            "remote_host": st.sampled_from([HOST, "", "999.1.1.1", "example.com", "::1"]),
            "remote_port": st.sampled_from(["udp", "tcp", 0, -1, 65536, 70000]),
            "ssrc": st.integers(-1, (1 << 32) + 1),
            "transport": st.sampled_from(["udp", "tcp-listen", "tcp-connect", "UDP", "rtsp"]),
            "payload_type": st.integers(-1, 130),
            "local_host": st.sampled_from(["0.0.0.0", HOST, "", "host.invalid", "8.8.8.8"]),
        }
    )
)
def test_any_request_gets_a_stream_or_a_media_error_and_leaks_nothing(
    fields: dict[str, Any],
) -> None:
    asyncio.run(_open_and_close(fields))


async def _open_and_close(fields: dict[str, Any]) -> None:
    # The platform's ports are ours, so a valid request reaches nobody else's socket.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((HOST, 0))
    tcp = await asyncio.start_server(lambda r, w: w.close(), HOST, 0)
    ports = {"udp": udp.getsockname()[1], "tcp": tcp.sockets[0].getsockname()[1]}
    fields = {**fields, "remote_port": ports.get(fields["remote_port"], fields["remote_port"])}
    try:
        async with backend_for(keyframe_wait_s=0.5, accept_timeout_s=0.2) as (backend, _):
            try:
                session = await backend.open(MediaRequest(**fields))
            except MediaError as err:
                assert str(err)
            else:
                assert session.call_id == fields["call_id"] and session.local_port > 0
                assert backend.playing() == 1
                await backend.close(session.call_id)
            assert backend.playing() == 0
            consumers = [c for row in backend.streams.stats() for c in row["consumers"]]
            assert not any(c.startswith("gb28181:") for c in consumers), consumers
    finally:
        udp.close()
        tcp.close()
