"""Recordings for an upper platform, end to end: SIPp as the platform asks RecordInfo,
plays back a recorded span (UDP, PAUSE then PLAY by MANSRTSP INFO) and downloads one
(TCP both ways, H.264 and H.265); the PS received is checked with ffprobe and the
MediaStatus MESSAGE (NotifyType 121) must reach SIPp. Recordings are made by the real
segment writer; bad requests get SIP errors."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.config import parse_settings
from gateway.events.bus import EventBus
from gateway.gb28181.part import Gb28181Part
from gateway.gb28181.records import GatewayRecords, gb_time
from gateway.recorder.index import segment_path
from gateway.recorder.service import Recorder
from gateway.recorder.writer import SegmentWriter
from gateway.store.db import Database
from tests.gb28181_support import DEVICE_ID, HOST, SERVER_ID, Sipp, free_port, settings, upstream
from tests.ps_support import ffprobe, rtp_to_ps, split_rfc4571
from tests.recorder_media import encode_aus
from tests.test_gb28181_calls import RawPlatform

SIPP = Path(__file__).parent / "sipp"


def _tree() -> GatewayNode:
    return GatewayNode(
        id="town",
        name="镇",
        status="online",
        cameras=[CameraNode(id="cam-01", path="cam-01", name="镇政府", status="online")],
    )


def _recorded(tmp_path: Path, codec: str) -> tuple[Any, float]:
    """cam-01 recorded at [T, T+4), [T+4, T+8) and [T+12, T+16), 25 fps, GOP 1 s."""
    cfg = {
        "data_dir": str(tmp_path),
        "retention": {"max_usage_percent": 100, "min_free_mb": 0},
        "cameras": [{"id": "cam-01", "rtsp_url": "rtsp://127.0.0.1:9/none"}],
    }
    db = Database(tmp_path / "gateway.db")
    gw = SimpleNamespace(
        settings=parse_settings(cfg),
        data_dir=tmp_path,
        db=db,
        bus=EventBus(db),
        loop=None,
        path="gw",
    )
    rec = Recorder(gw, registry=None, streams=None)
    # The rest of the gateway's local view (gateway.cascade.local.Local) is off.
    gw.recorder, gw.registry, gw.streams, gw.reports, gw.cascade = rec, None, None, None, None
    t0 = float(round(time.time()) - 3600)
    aus = encode_aus(100, gop=25, codec=codec)
    for start in (t0, t0 + 4, t0 + 12):
        path = segment_path(rec.root, "cam-01", start)
        writer = SegmentWriter(path, aus[0], codec)
        for au in aus:
            writer.write(au)
        res = writer.close()
        sid = rec.index.open_segment("cam-01", "main", path, start, codec, "continuous")
        rec.index.close_segment(sid, "cam-01", start, res.duration, res.bytes, 320, 240, False)
    return gw, t0


class Receiver:
    """The platform's media port: UDP, a TCP port we dial, or TCP to our port. Packets
    are kept with their arrival time (monotonic)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, stype)
        # Room for a burst while this thread waits for a busy machine's CPU.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        if kind == "tcp-connect":
            self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self._thread: threading.Thread | None = None

    def start(self, connect_to: int = 0) -> None:
        if connect_to:
            self.sock.settimeout(10)
            self.sock.connect((HOST, connect_to))
            self.sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = self.sock
        if self.kind == "tcp-connect":
            while not self._stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                    conn.settimeout(0.2)
                    break
                except TimeoutError:
                    continue
        rest = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            if self.kind == "udp":
                self.packets.append((now, data))
                continue
            if not data:
                return
            got, rest = split_rfc4571(rest + data)
            self.packets += [(now, p) for p in got]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def probe(self, tmp_path: Path, ssrc: int) -> dict[str, Any]:
        ps = rtp_to_ps([p for _, p in self.packets], ssrc)
        path = tmp_path / f"received-{self.kind}.ps"
        path.write_bytes(ps)
        return ffprobe(path)


def _camera(client: Any) -> Any:
    return next(c for c in client.directory.channels() if c.kind == "camera")


def _frames(probe: dict[str, Any]) -> tuple[str, int]:
    (video,) = [s for s in probe["streams"] if s["codec_type"] == "video"]
    return video["codec_name"], int(video["nb_read_frames"])


def _sipp(scenario: str, tmp_path: Path, sip_port: int, channel: str, keys: dict[str, str]) -> Sipp:
    args: list[str] = []
    for k, v in {"device": DEVICE_ID, "server": SERVER_ID, "channel": channel, **keys}.items():
        args += ["-key", k, v]
    return Sipp(
        scenario,
        tmp_path,
        *("-oocsf", str(SIPP / "gb_platform_ooc.xml")),
        *args,
        *("-m", "1", "-trace_msg", "-message_file", str(tmp_path / f"{scenario}.log")),
        f"{HOST}:{sip_port}",
        port=int(keys["platform_port"]),
    )


async def _gateway(tmp_path: Path, gw: Any, platform_port: int) -> Gb28181Part:
    part = Gb28181Part(
        settings(upstream(platform_port, catalog_page=2)),
        db=Database(tmp_path / "gb.db"),
        tree=_tree,
        media=None,
        records=GatewayRecords(gw, gw.data_dir),
    )
    await part.start()
    return part


async def test_platform_lists_recordings_and_plays_back_with_pause_and_resume(
    tmp_path: Path,
) -> None:
    gw, t0 = await asyncio.to_thread(_recorded, tmp_path, "h264")
    platform_port = free_port()
    part = await _gateway(tmp_path, gw, platform_port)
    client = part.clients["county"]
    channel = _camera(client)
    assert channel.camera_path == "cam-01"
    media = Receiver("udp")
    media.start()
    keys = {
        "platform_port": str(platform_port),
        "mport": str(media.port),
        "proto": "RTP/AVP",
        "setup": "a=recvonly",
        "ssrc": "1100000001",
        "tstart": str(int(t0 + 1)),
        "tend": str(int(t0 + 5)),
        "qstart": gb_time(t0 - 60),
        "qend": gb_time(t0 + 20),
    }
    sipp = _sipp("gb_platform_playback.xml", tmp_path, client.agent.local_port, channel.gb_id, keys)
    pauses: list[tuple[float, bool]] = []  # (time, paused) at each change

    async def watch() -> None:
        last = False
        while True:
            dialogs = list(client.calls.playback.dialogs.values())
            paused = bool(dialogs) and dialogs[0].stream.paused
            if paused != last:
                pauses.append((time.monotonic(), paused))
                last = paused
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        rc = await asyncio.to_thread(sipp.wait, 60)
        assert rc == 0, sipp.errors()[-3000:]
    finally:
        watcher.cancel()
        sipp.stop()
        media.stop()
        await part.stop()
    playback = client.calls.playback
    assert playback.media_status_sent == 1 and playback.playing() == 0
    # RecordInfo: two spans (the touching segments joined), SumNum on every page.
    text = (tmp_path / "gb_platform_playback.xml.log").read_bytes()
    answers = [
        ET.fromstring(raw.decode("gb18030"))
        for raw in re.findall(rb"<Response>.*?</Response>", text, re.S)
        if b"RecordInfo" in raw
    ]
    assert len(answers) == 1 and answers[0].findtext("SumNum") == "2"  # 2 items per MESSAGE
    assert {a.findtext("SN") for a in answers} == {"31"}
    items = [i for a in answers for i in a.findall("RecordList/Item")]
    spans = sorted((i.findtext("StartTime"), i.findtext("EndTime")) for i in items)
    assert spans == [(gb_time(t0), gb_time(t0 + 8)), (gb_time(t0 + 12), gb_time(t0 + 16))]
    assert all(i.findtext("DeviceID") == channel.gb_id for i in items)
    # Media: the span [T+1, T+5) whole (100 frames at 25 fps), decodable, one SSRC.
    codec, frames = _frames(media.probe(tmp_path, 1100000001))
    assert codec == "h264" and 95 <= frames <= 105, frames
    # PAUSE stopped the packets, PLAY resumed them.
    assert [p for _, p in pauses[:2]] == [True, False], pauses
    paused_at, resumed_at = pauses[0][0], pauses[1][0]
    arrivals = [t for t, _ in media.packets]
    # (margins: the watcher sees each change a poll late, the receiver stamps a bit late)
    assert not [t for t in arrivals if paused_at + 0.5 < t < resumed_at - 0.2]
    assert [t for t in arrivals if t < paused_at] and [t for t in arrivals if t > resumed_at]
    assert arrivals[-1] - arrivals[0] > 4.5  # the 4 s span, held up (not cut) by the pause


@pytest.mark.parametrize(("transport", "codec"), [("tcp-connect", "h264"), ("tcp-listen", "hevc")])
async def test_platform_downloads_a_recording_over_tcp_faster_than_real_time(
    tmp_path: Path, transport: str, codec: str
) -> None:
    """TCP passive: our receiver times the packets; TCP active: GStreamer dials our port,
    depayloads (RFC 4571, PS) and decodes."""
    from tests.test_gb_ps_stream import Gst

    gw, t0 = await asyncio.to_thread(_recorded, tmp_path, codec)
    platform_port = free_port()
    part = await _gateway(tmp_path, gw, platform_port)
    client = part.clients["county"]
    channel = _camera(client)
    media = Receiver(transport)
    if transport == "tcp-connect":  # the platform listens (a=setup:passive)
        media.start()
    keys = {
        "platform_port": str(platform_port),
        "mport": str(media.port),
        "proto": "TCP/RTP/AVP",
        "setup": "a=setup:" + ("passive" if transport == "tcp-connect" else "active"),
        "ssrc": "1100000002",
        "tstart": str(int(t0 + 2)),  # [T+2, T+6): across two segments
        "tend": str(int(t0 + 6)),
    }
    sipp = _sipp("gb_platform_download.xml", tmp_path, client.agent.local_port, channel.gb_id, keys)
    out = tmp_path / "gst.ps"
    gst: Gst | None = None
    try:
        if transport == "tcp-listen":  # the platform dials our port (a=setup:active)
            deadline = time.monotonic() + 20
            while not client.calls.playback.dialogs:
                assert time.monotonic() < deadline, sipp.errors()[-2000:]
                await asyncio.sleep(0.01)
            (dialog,) = client.calls.playback.dialogs.values()
            src = f"tcpclientsrc host={HOST} port={dialog.stream.sink.local_port} "
            src += "! application/x-rtp-stream,media=video,clock-rate=90000,encoding-name=MP1S "
            src += "! rtpstreamdepay"
            gst = Gst(src, codec, out)
        rc = await asyncio.to_thread(sipp.wait, 60)
        assert rc == 0, sipp.errors()[-3000:]
    finally:
        sipp.stop()
        media.stop()
        await part.stop()  # the BYE has closed the stream: GStreamer sees the end
        gst_rc = await asyncio.to_thread(gst.stop) if gst is not None else 0
    assert client.calls.playback.media_status_sent == 1
    if gst is not None:
        assert gst_rc == 0 and "ERROR" not in gst.text(), gst.text()[-2000:]
        assert 95 <= gst.decoded_frames() <= 105, gst.decoded_frames()
        probe = ffprobe(out)
        (video,) = probe["streams"]
        assert video["codec_name"] == codec and 95 <= int(video["nb_read_frames"]) <= 105
        assert not probe["errors"]
        return
    got_codec, frames = _frames(media.probe(tmp_path, 1100000002))
    assert got_codec == codec and 95 <= frames <= 105, frames
    # downloadspeed 4: the 4 s span takes about 1 s (bound: faster than real time).
    took = media.packets[-1][0] - media.packets[0][0]
    assert took < 3.5, took


PLAYBACK_SDP = (
    "v=0\r\no=x 0 0 IN IP4 127.0.28.1\r\ns=Playback\r\nu=x:0\r\nc=IN IP4 127.0.28.1\r\n"
    "t={t}\r\nm=video 9 RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\ny=1100000009\r\n"
)


def _record_info(channel: str, start: str, end: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Query><CmdType>RecordInfo</CmdType>'
        f"<SN>5</SN><DeviceID>{channel}</DeviceID><StartTime>{start}</StartTime>"
        f"<EndTime>{end}</EndTime><Type>all</Type></Query>"
    ).encode()


async def test_bad_recording_requests_get_sip_errors(tmp_path: Path) -> None:
    gw, t0 = await asyncio.to_thread(_recorded, tmp_path, "h264")
    part = await _gateway(tmp_path, gw, free_port())
    client = part.clients["county"]
    channel = _camera(client).gb_id
    raw = RawPlatform((HOST, client.agent.local_port))
    xml, sdp = "Application/MANSCDP+xml", "application/sdp"

    async def ask(method: str, user: str, body: bytes, ctype: str) -> tuple[int, str]:
        resp = await asyncio.to_thread(raw.request, method, user, body, ctype)
        return resp.status, resp.reason

    a, b = gb_time(t0), gb_time(t0 + 60)
    try:
        assert (await ask("MESSAGE", DEVICE_ID, _record_info(channel, b, a), xml))[0] == 400
        year = _record_info(channel, gb_time(t0 - 366 * 86400), a)
        assert (await ask("MESSAGE", DEVICE_ID, year, xml))[0] == 400
        garbage = _record_info(channel, "yesterday", a)
        assert (await ask("MESSAGE", DEVICE_ID, garbage, xml))[0] == 400
        unknown = _record_info("34020000001329999999", a, b)
        assert (await ask("MESSAGE", DEVICE_ID, unknown, xml))[0] == 404

        def invite(t: str) -> bytes:
            return PLAYBACK_SDP.format(t=t).encode()

        span = f"{int(t0 + 1)} {int(t0 + 5)}"
        assert (await ask("INVITE", "34020000001329999999", invite(span), sdp))[0] == 404
        status, reason = await ask("INVITE", channel, invite(f"{int(t0 + 5)} {int(t0)}"), sdp)
        assert status == 488 and "t=" in reason
        week = f"{int(t0 - 7 * 86400)} {int(t0)}"
        assert (await ask("INVITE", channel, invite(week), sdp))[0] == 488
        nothing = f"{int(t0 - 600)} {int(t0 - 300)}"  # before any recording
        assert (await ask("INVITE", channel, invite(nothing), sdp))[0] == 404
        control = b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 2.0\r\n"
        assert (await ask("INFO", channel, control, "Application/MANSRTSP"))[0] == 481
        assert (await ask("OPTIONS", DEVICE_ID, b"", ""))[0] == 200
    finally:
        raw.close()
        await part.stop()
    assert client.calls.playing() == 0


async def test_seek_and_scale_restart_the_recording_from_the_new_position(tmp_path: Path) -> None:
    from gateway.gb28181.media_api import MediaRequest
    from gateway.gb28181.ps.recorded import RecordedStream, codec_of
    from gateway.gb28181.ps.rtp import open_sink

    gw, t0 = await asyncio.to_thread(_recorded, tmp_path, "h264")
    footage = await GatewayRecords(gw, gw.data_dir).footage("cam-01", t0, t0 + 8)
    assert [(s, e) for _, s, e in footage.files] == [(t0, t0 + 4), (t0 + 4, t0 + 8)]
    media = Receiver("udp")
    media.start()
    request = MediaRequest("seek", "cam-01", "main", HOST, media.port, 1100000004, "udp")
    sink = await open_sink("udp", HOST, HOST, media.port, 5)
    ended: list[str] = []
    codec = await asyncio.to_thread(codec_of, footage.files)
    stream = RecordedStream(
        request, sink, footage.files, codec, t0, t0 + 8, on_done=ended.append
    )  # the 8 s span, in real time
    stream.begin()
    try:
        await asyncio.sleep(0.5)
        at_seek = stream.frames_sent
        stream.play(seek_s=6.0, scale=4.0)  # the last 2 s, at 4x: about half a second
        deadline = time.monotonic() + 20
        while not ended:
            assert time.monotonic() < deadline, "the stream did not reach the end"
            await asyncio.sleep(0.02)
        assert ended == ["end"] and t0 + 7.9 <= stream.position < t0 + 8
        # From the keyframe at T+6 on (GOP 1 s): 2 s at 25 fps.
        assert 49 <= stream.frames_sent - at_seek <= 51, (at_seek, stream.frames_sent)
        # A seek after the end plays again from there.
        stream.play(seek_s=7.0)
        deadline = time.monotonic() + 20
        while len(ended) < 2:
            assert time.monotonic() < deadline, "the seek after the end did not play"
            await asyncio.sleep(0.02)
        assert ended == ["end", "end"]
    finally:
        await stream.stop()
        media.stop()
    frames = _frames(media.probe(tmp_path, 1100000004))[1]
    assert frames == stream.frames_sent


async def test_a_platform_that_drops_the_media_connection_gets_a_bye(tmp_path: Path) -> None:
    from gateway.gb28181.sip.agent import make_response
    from gateway.gb28181.sip.message import SipMessage

    gw, t0 = await asyncio.to_thread(_recorded, tmp_path, "h264")
    raw = RawPlatform()
    part = await _gateway(tmp_path, gw, raw.sock.getsockname()[1])
    client = part.clients["county"]
    raw.target = (HOST, client.agent.local_port)
    channel = _camera(client).gb_id
    media = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    media.bind((HOST, 0))
    media.listen(1)
    media.settimeout(10)
    offer = (
        PLAYBACK_SDP.format(t=f"{int(t0)} {int(t0 + 8)}")
        .replace("m=video 9 RTP/AVP", f"m=video {media.getsockname()[1]} TCP/RTP/AVP")
        .replace("y=", "a=setup:passive\r\ny=")
        .encode()
    )
    try:
        ok = await asyncio.to_thread(raw.request, "INVITE", channel, offer, "application/sdp")
        assert ok.status == 200 and b"a=setup:active" in ok.body
        ack = SipMessage(method="ACK", uri=f"sip:{channel}@3402000000")
        for name in ("Via", "From", "To", "Call-ID"):
            ack.add(name, ok.get(name))
        ack.add("CSeq", f"{ok.cseq[0]} ACK")
        raw.sock.sendto(ack.to_bytes(), raw.target)
        conn, _ = await asyncio.to_thread(media.accept)
        conn.settimeout(10)
        assert await asyncio.to_thread(conn.recv, 4096)  # the stream flows, then we hang up
        conn.close()
        bye, addr = await asyncio.to_thread(raw.next_request, "BYE")
        raw.sock.sendto(make_response(bye, 200, "OK").to_bytes(), addr)
        assert bye.call_id == ok.call_id
        deadline = time.monotonic() + 10
        while client.calls.playing():
            assert time.monotonic() < deadline, "the playback dialog was not closed"
            await asyncio.sleep(0.02)
    finally:
        raw.close()
        media.close()
        await part.stop()
