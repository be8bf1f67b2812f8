"""The platform asks (SIPp as UAC): a paged Catalog of a three-level tree with ParentIDs,
then INVITE/ACK/BYE for a village camera through a real UDP media backend; and error
answers (404 unknown channel, 488 from the backend, 481, hostile bodies) over raw UDP."""

from __future__ import annotations

import asyncio
import re
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.gb28181.part import Gb28181Part
from gateway.gb28181.sip.message import SipMessage, parse_datagram
from gateway.store.db import Database
from tests.gb28181_support import (
    DEVICE_ID,
    HOST,
    SERVER_ID,
    Sipp,
    UdpMediaBackend,
    free_port,
    settings,
    upstream,
    wait_for,
)


def _tree() -> GatewayNode:
    villages = [
        GatewayNode(
            id=f"village-{v}",
            path=f"village-{v}",
            name=f"{v}村",
            status="online",
            cameras=[
                CameraNode(
                    id=f"cam-{c}",
                    path=f"village-{v}/cam-{c}",
                    name=f"{v}村 摄像机{c}",
                    status="online" if c == 1 else "offline",
                )
                for c in (1, 2)
            ],
        )
        for v in (1, 2, 3)
    ]
    return GatewayNode(
        id="town",
        name="城关镇",
        status="online",
        cameras=[CameraNode(id="cam-01", path="cam-01", name="镇政府", status="online")],
        children=villages,
    )


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.settimeout(10)
    yield sock
    sock.close()


def _catalog_items(trace: bytes) -> tuple[set[int], list[ET.Element]]:
    sums: set[int] = set()
    items: list[ET.Element] = []
    for raw in re.findall(rb"<Response>.*?</Response>", trace, re.S):
        root = ET.fromstring(raw.decode("gb18030"))
        if root.findtext("CmdType") != "Catalog":
            continue
        assert root.findtext("SN") == "17"
        sums.add(int(root.findtext("SumNum") or -1))
        items += root.findall("DeviceList/Item")
    return sums, items


async def test_platform_gets_the_whole_paged_catalog_and_plays_a_village_camera(
    tmp_path: Path, receiver: socket.socket
) -> None:
    media = UdpMediaBackend()
    platform_port = free_port()
    part = Gb28181Part(
        settings(upstream(platform_port, catalog_page=2)),
        db=Database(tmp_path / "gw.db"),
        tree=_tree,
        media=media,
    )
    await part.start()
    client = part.clients["county"]
    channels = client.directory.channels()
    by_path = {c.camera_path: c for c in channels if c.kind == "camera"}
    target = by_path["village-2/cam-1"]
    trace = tmp_path / "uac.log"
    sipp = Sipp(
        "gb_platform_uac.xml",
        tmp_path,
        *("-oocsf", str(Path(__file__).parent / "sipp" / "gb_platform_ooc.xml")),
        *("-key", "device", DEVICE_ID, "-key", "server", SERVER_ID),
        *("-key", "channel", target.gb_id, "-key", "mport", str(receiver.getsockname()[1])),
        *("-m", "1", "-trace_msg", "-message_file", str(trace)),
        f"{HOST}:{client.agent.local_port}",
        port=platform_port,
    )
    try:
        rc = await asyncio.to_thread(sipp.wait, 40)
        assert rc == 0, sipp.errors()[-2000:]
        await wait_for(lambda: client.queries.channels_pushed == len(channels), 10, "catalog")
        data, _ = await asyncio.to_thread(receiver.recvfrom, 2048)
        await wait_for(lambda: media.closed != [], 10, "the BYE closing the stream")
    finally:
        sipp.stop()
        await part.stop()
    # Media: opened for the right camera with the platform's port and SSRC, closed by BYE.
    assert int.from_bytes(data[8:12], "big") == 100000001
    (req,) = media.open_calls
    assert (req.camera_id, req.transport, req.remote_host) == ("village-2/cam-1", "udp", HOST)
    assert req.remote_port == receiver.getsockname()[1]
    assert media.closed == [req.call_id] and client.calls.playing() == 0
    # Catalog: every channel once, SumNum on every page, folders with the right parents.
    sums, items = _catalog_items(trace.read_bytes())
    assert sums == {len(channels)} == {11}  # 1 group + 3 villages + 7 cameras
    got = {i.findtext("DeviceID"): i for i in items}
    assert len(items) == len(got) == len(channels)
    assert all(len(gid or "") == 20 for gid in got)
    group = next(c for c in channels if c.kind == "group")
    village2 = next(c for c in channels if c.kind == "org" and c.name == "2村")
    assert got[village2.gb_id].findtext("ParentID") == group.gb_id
    assert got[target.gb_id].findtext("ParentID") == village2.gb_id
    assert got[target.gb_id].findtext("Name") == "2村 摄像机1"
    assert got[target.gb_id].findtext("Status") == "ON"
    assert got[by_path["village-2/cam-2"].gb_id].findtext("Status") == "OFF"
    assert got[by_path["cam-01"].gb_id].findtext("ParentID") == group.gb_id
    assert target.gb_id[10:13] == "132" and village2.gb_id[10:13] == "216"
    # DeviceInfo and DeviceStatus answers, with the query's SN, in GB2312.
    text = trace.read_bytes().decode("gb18030", "replace")
    info = re.search(r"<Response>\s*<CmdType>DeviceInfo</CmdType>.*?</Response>", text, re.S)
    assert info and "<SN>18</SN>" in info.group(0) and "<Channel>7</Channel>" in info.group(0)
    status = re.search(r"<Response>\s*<CmdType>DeviceStatus</CmdType>.*?</Response>", text, re.S)
    assert status and "<SN>19</SN>" in status.group(0) and "<Online>ONLINE</Online>" in text
    config = re.search(r"<Response>\s*<CmdType>ConfigDownload</CmdType>.*?</Response>", text, re.S)
    assert config and "<SN>20</SN>" in config.group(0)
    assert f"<SIPServerID>{SERVER_ID}</SIPServerID>" in config.group(0)
    assert "<HeartBeatCount>2</HeartBeatCount>" in config.group(0)


def test_channel_ids_are_stable_and_never_reused(tmp_path: Path) -> None:
    from gateway.gb28181.channels import ChannelDirectory

    db = Database(tmp_path / "gw.db")
    first = {c.camera_path: c.gb_id for c in ChannelDirectory(db, _tree, "34020000").channels()}
    smaller = _tree()
    smaller.cameras = []
    ChannelDirectory(db, lambda: smaller, "34020000").channels()
    again = {c.camera_path: c.gb_id for c in ChannelDirectory(db, _tree, "34020000").channels()}
    assert first == again
    grown = _tree()
    grown.cameras.append(CameraNode(id="cam-02", path="cam-02"))
    ids = [c.gb_id for c in ChannelDirectory(db, lambda: grown, "34020000").channels()]
    assert len(set(ids)) == len(ids) == 12


def test_only_shared_cameras_and_their_folders_are_listed(tmp_path: Path) -> None:
    from gateway.gb28181.channels import ChannelDirectory

    db = Database(tmp_path / "gw.db")
    everything = ChannelDirectory(db, _tree, "34020000").channels()
    some = ChannelDirectory(db, _tree, "34020000", share=["village-1/*", "cam-01"])
    listed = some.channels()
    cams = sorted(c.camera_path for c in listed if c.kind == "camera")
    assert cams == ["cam-01", "village-1/cam-1", "village-1/cam-2"]
    assert [c.name for c in listed if c.kind == "org"] == ["1村"]
    hidden = next(c for c in everything if c.camera_path == "village-2/cam-1")
    assert some.camera_for(hidden.gb_id) is None  # an INVITE for it gets 404
    assert {c.gb_id for c in listed} <= {c.gb_id for c in everything}


class RawPlatform:
    """A platform made of one UDP socket: sends requests, returns the final response."""

    def __init__(self, target: tuple[str, int] = (HOST, 9)) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(10)
        self.n = 0

    def request(self, method: str, uri_user: str, body: bytes = b"", ctype: str = "") -> SipMessage:
        self.n += 1
        port = self.sock.getsockname()[1]
        msg = SipMessage(method=method, uri=f"sip:{uri_user}@3402000000")
        msg.add("Via", f"SIP/2.0/UDP {HOST}:{port};branch=z9hG4bKraw{self.n}")
        msg.add("From", f"<sip:{SERVER_ID}@3402000000>;tag=raw")
        msg.add("To", f"<sip:{uri_user}@3402000000>")
        msg.add("Call-ID", f"raw-{self.n}")
        msg.add("CSeq", f"{self.n} {method}")
        if ctype:
            msg.add("Content-Type", ctype)
        msg.body = body
        return self.send(msg.to_bytes())

    def send(self, data: bytes) -> SipMessage:
        self.sock.sendto(data, self.target)
        while True:
            resp = parse_datagram(self.sock.recvfrom(65535)[0])
            # Skip our REGISTERs and keepalives when this socket is the upstream too.
            if not resp.is_request and resp.status >= 200 and resp.call_id == msg_id(data):
                return resp

    def next_request(self, method: str) -> tuple[SipMessage, tuple[str, int]]:
        while True:
            data, addr = self.sock.recvfrom(65535)
            msg = parse_datagram(data)
            if msg.method == method:
                return msg, addr

    def close(self) -> None:
        self.sock.close()


def msg_id(data: bytes) -> str:
    return parse_datagram(data).call_id


SDP = (
    b"v=0\r\no=x 0 0 IN IP4 127.0.28.1\r\ns=Play\r\nc=IN IP4 127.0.28.1\r\nt=0 0\r\n"
    b"m=video 9 RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\ny=0100000002\r\n"
)


async def test_bad_requests_get_sip_errors_and_leak_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    media = UdpMediaBackend(fail="camera cam-01 is offline")
    part = Gb28181Part(
        settings(upstream(free_port())), db=Database(tmp_path / "gw.db"), tree=_tree, media=media
    )
    await part.start()
    client = part.clients["county"]
    cam = next(c for c in client.directory.channels() if c.camera_path == "cam-01")
    raw = RawPlatform((HOST, client.agent.local_port))
    sdp_type = "application/sdp"
    xml = "Application/MANSCDP+xml"
    try:
        unknown = await asyncio.to_thread(
            raw.request, "INVITE", "34020000001329999999", SDP, sdp_type
        )
        assert unknown.status == 404
        refused = await asyncio.to_thread(raw.request, "INVITE", cam.gb_id, SDP, sdp_type)
        assert refused.status == 488 and "offline" in refused.reason
        bad_sdp = await asyncio.to_thread(
            raw.request, "INVITE", cam.gb_id, SDP.replace(b"s=Play", b"s=Talk"), sdp_type
        )
        assert bad_sdp.status == 488 and "Talk" in bad_sdp.reason
        bye = await asyncio.to_thread(raw.request, "BYE", cam.gb_id)
        assert bye.status == 481
        bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><Query>&b;</Query>'
        hostile = await asyncio.to_thread(raw.request, "MESSAGE", DEVICE_ID, bomb, xml)
        assert hostile.status == 400
        # Garbage datagrams are dropped with a log line; the agent keeps answering.
        raw.sock.sendto(b"\x00garbage\r\n\r\n", raw.target)
        raw.sock.sendto(b"INVITE sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n", raw.target)
        options = await asyncio.to_thread(raw.request, "OPTIONS", DEVICE_ID)
        assert options.status == 200
    finally:
        raw.close()
        await part.stop()
    assert client.calls.playing() == 0 and media.playing() == 0
    assert "malformed SIP datagram" in caplog.text
    assert "forbidden XML construct" in caplog.text


async def test_stopping_hangs_up_playing_dialogs_with_bye(tmp_path: Path) -> None:
    from gateway.gb28181.sip.agent import make_response

    media = UdpMediaBackend()
    raw = RawPlatform()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    part = Gb28181Part(
        settings(upstream(raw.sock.getsockname()[1])),
        db=Database(tmp_path / "gw.db"),
        tree=_tree,
        media=media,
    )
    await part.start()
    client = part.clients["county"]
    raw.target = (HOST, client.agent.local_port)
    cam = next(c for c in client.directory.channels() if c.camera_path == "village-3/cam-1")
    offer = SDP.replace(b"m=video 9 ", f"m=video {sink.getsockname()[1]} ".encode())
    try:
        ok = await asyncio.to_thread(raw.request, "INVITE", cam.gb_id, offer, "application/sdp")
        assert ok.status == 200 and b"y=0100000002" in ok.body
        ack = SipMessage(method="ACK", uri=f"sip:{cam.gb_id}@3402000000")
        for name in ("Via", "From", "To", "Call-ID"):
            ack.add(name, ok.get(name))
        ack.add("CSeq", f"{ok.cseq[0]} ACK")
        raw.sock.sendto(ack.to_bytes(), raw.target)
        await wait_for(lambda: all(d.acked for d in client.calls.dialogs.values()), 10, "ACK")
        stopping = asyncio.create_task(part.stop())
        bye, addr = await asyncio.to_thread(raw.next_request, "BYE")
        raw.sock.sendto(make_response(bye, 200, "OK").to_bytes(), addr)
        await asyncio.wait_for(stopping, 20)
    finally:
        raw.close()
        sink.close()
        await part.stop()
    assert bye.call_id == ok.call_id
    assert media.closed == [ok.call_id] and media.playing() == 0


async def test_a_2000_camera_three_level_catalog_arrives_whole(tmp_path: Path) -> None:
    towns = [
        GatewayNode(
            id=f"t{t}",
            path=f"t{t}",
            status="online",
            children=[
                GatewayNode(
                    id=f"v{v}",
                    path=f"t{t}/v{v}",
                    status="online",
                    cameras=[
                        CameraNode(id=f"c{c}", path=f"t{t}/v{v}/c{c}", status="online")
                        for c in range(20)
                    ],
                )
                for v in range(10)
            ],
        )
        for t in range(10)
    ]
    city = GatewayNode(id="city", status="online", children=towns)
    port = free_port()
    part = Gb28181Part(
        settings(upstream(port, catalog_page=5, keepalive_s=60)),
        db=Database(tmp_path / "gw.db"),
        tree=lambda: city,
        media=None,
    )
    await part.start()
    client = part.clients["county"]
    trace = tmp_path / "catalog.log"
    sipp = Sipp(
        "gb_platform_catalog.xml",
        tmp_path,
        *("-oocsf", str(Path(__file__).parent / "sipp" / "gb_platform_ooc.xml")),
        *("-key", "device", DEVICE_ID, "-key", "server", SERVER_ID, "-key", "sn", "17"),
        *("-d", "600000", "-m", "1", "-trace_msg", "-message_file", str(trace)),
        f"{HOST}:{client.agent.local_port}",
        port=port,
    )
    try:
        await wait_for(lambda: client.queries.channels_pushed == 2111, 60, "2,111 channels")
    finally:
        sipp.stop()
        await part.stop()
    sums, items = _catalog_items(trace.read_bytes())
    assert sums == {2111}
    ids = {i.findtext("DeviceID") for i in items}
    assert len(items) == len(ids) == 2111
    cameras = [i for i in items if (i.findtext("DeviceID") or "")[10:13] == "132"]
    assert len(cameras) == 2000
    # Every ParentID names a folder that was sent: the tree is whole at the third level.
    folders = {i.findtext("DeviceID") for i in items if i not in cameras}
    assert all(i.findtext("ParentID") in folders for i in items if i.findtext("ParentID"))
    villages = {i.findtext("ParentID") for i in cameras}
    assert len(villages) == 100
