"""Hang-ups both ways with the real PS backend on a simulated camera: when the media ends by
itself (the camera goes away, the platform's media server drops the TCP connection) we send
the platform a BYE; the platform's BYE stops the stream before its 200 OK. After each, no
stream, lease or hub subscriber of ours is left."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.config import Settings
from gateway.gb28181.part import Gb28181Part
from gateway.gb28181.ps.backend import PsMediaBackend
from gateway.gb28181.sip.agent import make_response
from gateway.gb28181.sip.message import SipMessage
from gateway.store.db import Database
from gateway.streams.manager import StreamManager
from tests.gb28181_support import HOST, settings, upstream, wait_for
from tests.support import SimProcess, small_sim_args
from tests.test_gb28181_calls import RawPlatform

SIM = "127.0.111.1"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    proc = SimProcess(
        tmp_path_factory.mktemp("gb-hangup"),
        *small_sim_args(SIM, fps=10, gop=10),
        "--no-onvif",
        name="sim-hangup",
    )
    try:
        yield proc
    finally:
        proc.stop()


def _tree() -> GatewayNode:
    return GatewayNode(
        id="town",
        name="镇",
        status="online",
        cameras=[CameraNode(id="cam-1", path="cam-1", name="路口", status="online")],
    )


@contextlib.asynccontextmanager
async def gateway(
    sim: SimProcess, tmp_path: Path
) -> AsyncIterator[tuple[Gb28181Part, PsMediaBackend, StreamManager, RawPlatform]]:
    cfg = Settings(
        cameras=[{"id": "cam-1", "rtsp_url": sim.cameras[0]["rtsp_main"]}],
        streams={"linger_s": 0, "open_timeout_s": 3, "read_timeout_s": 3},
    )
    streams = StreamManager(cfg)
    await streams.start()
    # A short stall timeout: a camera gone for good ends its stream within seconds.
    # A small send buffer: a platform that stops reading shows within a second or two.
    media = PsMediaBackend(streams, stall_timeout_s=2.0, max_buffered_bytes=64 * 1024)
    raw = RawPlatform()
    part = Gb28181Part(
        settings(upstream(raw.sock.getsockname()[1], keepalive_s=60)),
        db=Database(tmp_path / "gw.db"),
        tree=_tree,
        media=media,
    )
    assert media.on_ended == part.media_ended  # wired by the part itself
    await part.start()
    raw.target = (HOST, part.clients["county"].agent.local_port)
    try:
        yield part, media, streams, raw
    finally:
        raw.close()
        await part.stop()
        await media.stop()
        await streams.stop()


def _offer(transport: str, port: int) -> bytes:
    proto = "RTP/AVP" if transport == "udp" else "TCP/RTP/AVP"
    setup = "" if transport == "udp" else "a=setup:passive\r\na=connection:new\r\n"
    return (
        f"v=0\r\no=x 0 0 IN IP4 {HOST}\r\ns=Play\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=video {port} {proto} 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n{setup}"
        "y=0100000777\r\n"
    ).encode()


async def _play(part: Gb28181Part, raw: RawPlatform, offer: bytes) -> SipMessage:
    client = part.clients["county"]
    (cam,) = [c for c in client.directory.channels() if c.kind == "camera"]
    ok = await asyncio.to_thread(raw.request, "INVITE", cam.gb_id, offer, "application/sdp")
    assert ok.status == 200, ok.reason
    ack = SipMessage(method="ACK", uri=f"sip:{cam.gb_id}@3402000000")
    for name in ("Via", "From", "To", "Call-ID"):
        ack.add(name, ok.get(name))
    ack.add("CSeq", f"{ok.cseq[0]} ACK")
    raw.sock.sendto(ack.to_bytes(), raw.target)
    await wait_for(lambda: all(d.acked for d in client.calls.dialogs.values()), 10, "ACK")
    return ok


def _ours(streams: StreamManager) -> list[Any]:
    """Leases and hub subscribers the GB/T 28181 side still holds."""
    held = [c for s in streams.stats() for c in s["consumers"] if c.startswith("gb28181:")]
    subs = [n for e in streams._entries.values() for n in e.hub.subscribers if "gb28181" in n.name]
    return held + subs


async def _hung_up_by_us(raw: RawPlatform, ok: SipMessage) -> SipMessage:
    bye, addr = await asyncio.to_thread(raw.next_request, "BYE")
    raw.sock.sendto(make_response(bye, 200, "OK").to_bytes(), addr)
    assert bye.call_id == ok.call_id
    # The BYE is in the dialog the platform opened: its From tag is our To tag.
    assert bye.get("From").split("tag=")[1] == ok.get("To").split("tag=")[1]
    return bye


async def test_platform_dropping_the_tcp_media_connection_gets_a_bye(
    sim: SimProcess, tmp_path: Path
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def media_server(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    server = await asyncio.start_server(media_server, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with gateway(sim, tmp_path) as (part, media, streams, raw):
            ok = await _play(part, raw, _offer("tcp-connect", port))
            await wait_for(lambda: bool(accepted), 10, "our media connection")
            await wait_for(lambda: media.status()["streams"][0]["frames_sent"] > 5, 10, "frames")
            sock = accepted[0].get_extra_info("socket")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            accepted[0].close()  # a reset: the media server went away
            await asyncio.wait_for(_hung_up_by_us(raw, ok), 30)
            await wait_for(lambda: media.playing() == 0 and not _ours(streams), 10, "release")
            assert part.clients["county"].calls.playing() == 0
            assert media.ended["platform-gone"] == 1
    finally:
        server.close()


async def test_platform_that_stops_reading_gets_a_bye(sim: SimProcess, tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def media_server(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)  # and never reads

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before listen: inherited
    sock.bind((HOST, 0))
    sock.listen()
    server = await asyncio.start_server(media_server, sock=sock)
    try:
        async with gateway(sim, tmp_path) as (part, media, streams, raw):
            ok = await _play(part, raw, _offer("tcp-connect", sock.getsockname()[1]))
            await asyncio.wait_for(_hung_up_by_us(raw, ok), 60)
            await wait_for(lambda: media.playing() == 0 and not _ours(streams), 10, "release")
            assert part.clients["county"].calls.playing() == 0
            assert media.ended["platform-stalled"] == 1, dict(media.ended)
    finally:
        server.close()
        for w in accepted:
            w.close()


async def test_camera_gone_for_good_ends_the_call_with_a_bye(
    sim: SimProcess, tmp_path: Path
) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    try:
        async with gateway(sim, tmp_path) as (part, media, streams, raw):
            ok = await _play(part, raw, _offer("udp", sink.getsockname()[1]))
            await wait_for(lambda: media.status()["streams"][0]["frames_sent"] > 5, 10, "frames")
            await asyncio.to_thread(sim.fault, sim.cameras[0]["id"], "offline")
            await asyncio.wait_for(_hung_up_by_us(raw, ok), 30)
            await wait_for(lambda: media.playing() == 0 and not _ours(streams), 10, "release")
            assert part.clients["county"].calls.playing() == 0
            assert media.ended["camera-stalled"] + media.ended["camera-ended"] == 1
    finally:
        await asyncio.to_thread(sim.fault, sim.cameras[0]["id"], "normal")
        sink.close()


async def test_the_platforms_bye_stops_the_stream_before_its_200(
    sim: SimProcess, tmp_path: Path
) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    try:
        async with gateway(sim, tmp_path) as (part, media, streams, raw):
            ok = await _play(part, raw, _offer("udp", sink.getsockname()[1]))
            await wait_for(lambda: media.status()["streams"][0]["frames_sent"] > 5, 10, "frames")
            assert _ours(streams) and media.playing() == 1
            bye = SipMessage(method="BYE", uri=ok.get("Contact").strip("<>"))
            bye.add("Via", f"SIP/2.0/UDP {HOST}:{raw.sock.getsockname()[1]};branch=z9hG4bKbye1")
            bye.add("From", ok.get("From"))
            bye.add("To", ok.get("To"))
            bye.add("Call-ID", ok.call_id)
            bye.add("CSeq", f"{ok.cseq[0] + 1} BYE")
            answer = await asyncio.to_thread(raw.send, bye.to_bytes())
            assert answer.status == 200
            # At once: nothing of the stream is left when the 200 OK arrives.
            assert media.playing() == 0 and not _ours(streams)
            assert part.clients["county"].calls.playing() == 0
            assert dict(media.ended) == {"closed": 1}
    finally:
        sink.close()
