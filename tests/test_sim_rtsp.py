"""``gateway sim`` as a real process: RTSP plays in PyAV and ffprobe; faults and motion act."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import struct
import subprocess
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from gateway.sim import barcode
from gateway.sim.camera import SimCamera, SimProfile
from gateway.sim.source import MOTION_BAND, ProfileEncoder, Scene

SMALL = ("--size", "640x360", "--sub-size", "320x180", "--gop", "25")


def _base() -> str:
    # a fresh /24 per test: other people's sims may be running on this machine
    return f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"


def _open(url: str, transport: str = "tcp") -> av.container.InputContainer:
    return av.open(url, options={"rtsp_transport": transport, "timeout": "3000000"}, timeout=(5, 5))


def _frames(url: str, n: int, transport: str = "tcp") -> list[tuple[np.ndarray, float]]:
    """``n`` decoded luma planes with the time each was decoded."""
    out = []
    with _open(url, transport) as c:
        for f in c.decode(c.streams.video[0]):
            out.append((f.to_ndarray(format="gray"), time.time()))
            if len(out) >= n:
                break
    return out


class RawRtsp:
    """A bare RTSP/TCP client, to see exactly what the server sends."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        self.cseq = 0
        self.session = ""

    def request(self, method: str, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}"]
        if self.session:
            lines.append(f"Session: {self.session}")
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *rest = head.decode().split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in rest)}
        length = int(hdrs.get("content-length", 0))
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), hdrs, body

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed")
        self.buf += data

    def play(self, url: str) -> None:
        assert self.request("DESCRIBE", url, Accept="application/sdp")[0] == 200
        status, hdrs, _ = self.request(
            "SETUP", url + "/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
        )
        assert status == 200
        self.session = hdrs["session"].split(";")[0]
        assert self.request("PLAY", url, Range="npt=0.000-")[0] == 200

    def read_for(self, seconds: float) -> bytes:
        """Everything received in the next ``seconds`` (after what is buffered)."""
        got, self.buf = self.buf, b""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            got += data
        return got

    def close(self) -> None:
        self.sock.close()


def _interleaved_ok(data: bytes) -> bool:
    """Whether ``data`` is a clean run of ``$ ch len payload`` frames carrying RTP v2."""
    i = 0
    while i + 4 <= len(data):
        if data[i] != 0x24:
            return False
        (length,) = struct.unpack("!H", data[i + 2 : i + 4])
        if data[i + 1] == 0 and i + 4 < len(data) and data[i + 4] >> 6 != 2:
            return False
        i += 4 + length
    return True


def test_pyav_tcp_plays_main_with_camera_barcode_and_current_time(sim_factory) -> None:
    sim = sim_factory("--cameras", "2", "--base", _base(), *SMALL, "--no-onvif")
    cam = sim.cameras[1]
    assert cam["id"] == "cam-02" and cam["rtsp_main"].endswith("/main")
    frames = _frames(cam["rtsp_main"], 40)
    codes = [barcode.decode(y) for y, _ in frames]
    assert all(c is not None and c[1] == 2 for c in codes), codes
    assert frames[0][0].shape == (360, 640)
    lags = [t * 1000 - c[0] for (_, t), c in zip(frames, codes, strict=True) if c]
    # the first frames are old (PyAV probes ~1 s before returning); it then catches up
    assert min(lags) < 1000, lags
    assert min(lags) > -100, "frames from the future: barcode clock is wrong"


def test_udp_transport_plays_sub_stream(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    frames = _frames(sim.cameras[0]["rtsp_sub"], 15, transport="udp")
    assert frames[0][0].shape == (180, 320)
    assert sum(barcode.decode(y) is not None for y, _ in frames) >= 12
    assert {barcode.decode(y)[1] for y, _ in frames if barcode.decode(y)} == {1}


def test_offline_refuses_connections_then_online_resumes(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    cam = sim.cameras[0]
    addr = (cam["address"], cam["rtsp_port"])
    with _open(cam["rtsp_sub"]) as c:
        frames = c.decode(c.streams.video[0])
        next(frames)
        sim.fault(cam["id"], "offline")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(addr, timeout=2).close()
        # the open session is dropped: decoding ends or fails within a few seconds
        t0 = time.monotonic()
        with pytest.raises((av.error.FFmpegError, StopIteration, OSError)):
            while time.monotonic() - t0 < 15:
                next(frames)
        assert time.monotonic() - t0 < 14
    sim.fault(cam["id"], "online")
    frames2 = _frames(cam["rtsp_sub"], 5)
    assert barcode.decode(frames2[-1][0])[1] == 1


def test_stall_stops_rtp_and_replies_then_normal_resumes(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    cam = sim.cameras[0]
    client = RawRtsp(cam["address"], cam["rtsp_port"])
    try:
        client.play(cam["rtsp_sub"])
        assert len(client.read_for(1.0)) > 1000
        sim.fault(cam["id"], "stall")
        client.read_for(0.3)  # what was already in flight
        assert client.read_for(1.5) == b""
        # a hung camera: the TCP connection is open but requests get no answer
        client.sock.sendall(b"GET_PARAMETER " + cam["rtsp_sub"].encode() + b" RTSP/1.0\r\n")
        client.sock.sendall(b"CSeq: 99\r\nSession: " + client.session.encode() + b"\r\n\r\n")
        assert client.read_for(1.0) == b""
        sim.fault(cam["id"], "normal")
        resumed = client.read_for(1.5)
        assert len(resumed) > 1000 and resumed.startswith(b"$")
    finally:
        client.close()


def test_garbage_breaks_the_interleaved_framing(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    cam = sim.cameras[0]
    client = RawRtsp(cam["address"], cam["rtsp_port"])
    try:
        client.play(cam["rtsp_sub"])
        clean = client.read_for(1.0)
        assert len(clean) > 1000 and _interleaved_ok(clean)
        sim.fault(cam["id"], "garbage")
        assert not _interleaved_ok(clean + client.read_for(1.5))
    finally:
        client.close()


def test_motion_moves_an_object_in_the_band_only(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    cam = sim.cameras[0]
    h = 180
    band = slice(int(h * MOTION_BAND[0]) + 2, int(h * MOTION_BAND[1]) - 2)
    below_strip = int(h * barcode.STRIP_HEIGHT_FRACTION) + 2
    other = np.r_[below_strip : int(h * MOTION_BAND[0]) - 4, int(h * MOTION_BAND[1]) + 4 : h]

    def spread(frames: list[np.ndarray], rows: slice | np.ndarray) -> float:
        stack = np.stack([f[rows].astype(np.float32) for f in frames])
        return float(np.abs(stack - stack[0]).mean(axis=(1, 2)).max())

    with _open(cam["rtsp_sub"]) as c:
        decoded = (f.to_ndarray(format="gray") for f in c.decode(c.streams.video[0]))
        still = [next(decoded) for _ in range(40)][-20:]
        sim.motion(cam["id"], True)
        moving = [next(decoded) for _ in range(50)][-25:]
        sim.motion(cam["id"], False)
    assert spread(still, band) < 2.0, "band changes without motion"
    assert spread(still, other) < 2.0, "scene below the strip changes without motion"
    assert spread(moving, band) > 8.0, "no visible object in the motion band"
    assert spread(moving, other) < 2.0, "motion leaked outside its band"
    state = httpx.get(f"{sim.control}/cameras/{cam['id']}", timeout=5).json()
    assert state["motion"] is False


def test_digest_auth_rejects_without_credentials(sim_factory) -> None:
    sim = sim_factory(
        "--base", _base(), *SMALL, "--no-onvif", "--rtsp-auth", "--password", "s3cret"
    )
    cam = sim.cameras[0]
    with pytest.raises(av.error.FFmpegError):
        _open(cam["rtsp_sub"]).close()
    url = cam["rtsp_sub"].replace("rtsp://", "rtsp://admin:s3cret@")
    frames = _frames(url, 3)
    assert barcode.decode(frames[-1][0])[1] == 1
    client = RawRtsp(cam["address"], cam["rtsp_port"])
    try:
        status, hdrs, _ = client.request("DESCRIBE", cam["rtsp_sub"])
        assert status == 401 and hdrs["www-authenticate"].startswith("Digest ")
    finally:
        client.close()


@pytest.mark.parametrize("codec", ["hevc", "mjpeg"])
def test_other_codecs_play_in_ffprobe_and_pyav(sim_factory, codec: str) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif", "--codec", codec)
    url = sim.cameras[0]["rtsp_sub"]
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v",
         "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    height = 176 if codec == "mjpeg" else 180  # RTP/JPEG sizes are multiples of 8
    assert out.stdout.strip() == f"{codec},320,{height}", out.stderr
    frames = _frames(url, 5)
    assert barcode.decode(frames[-1][0])[1] == 1


def test_control_api_rejects_bad_requests(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif")
    r = httpx.post(f"{sim.control}/cameras/cam-01/fault", json={"mode": "explode"}, timeout=5)
    assert r.status_code == 400 and "mode must be one of" in r.json()["error"]
    r = httpx.post(f"{sim.control}/cameras/cam-99/motion", json={"on": True}, timeout=5)
    assert r.status_code == 404
    r = httpx.post(f"{sim.control}/cameras/cam-01/motion", content=b"{nope", timeout=5)
    assert r.status_code == 400
    cams = httpx.get(f"{sim.control}/cameras", timeout=5).json()
    assert [c["id"] for c in cams] == ["cam-01"]
    assert cams[0]["encoders"]["/main"]["running"] is False  # nobody plays: nothing encodes


def test_addresses_wrap_into_the_next_octet() -> None:
    from gateway.sim.runner import addresses

    assert addresses("127.0.10.253", 4) == [
        "127.0.10.253",
        "127.0.10.254",
        "127.0.11.1",
        "127.0.11.2",
    ]


def _cpu_ticks(stat: Path) -> int:
    # utime + stime, after the command name (which may hold spaces)
    return sum(int(x) for x in stat.read_text().rsplit(")", 1)[1].split()[11:13])


def test_fifty_cameras_start_fast_idle_cheaply_and_stop_on_sigterm(sim_factory) -> None:
    t0 = time.monotonic()
    sim = sim_factory("--cameras", "50", "--base", _base())
    started = time.monotonic() - t0
    keys = {"id", "name", "address", "http_port", "rtsp_port", "onvif_url", "rtsp_main",
            "rtsp_sub", "snapshot_url", "endpoint", "username", "password"}  # fmt: skip
    assert len(sim.cameras) == 50 and all(keys <= set(c) for c in sim.cameras)
    assert len({c["address"] for c in sim.cameras}) == 50
    assert len({c["endpoint"] for c in sim.cameras}) == 50
    assert sim.cameras[49]["id"] == "cam-50"
    assert started < 30, f"50 cameras took {started:.1f}s to start"
    # encoders are lazy: fifty idle cameras cost (almost) nothing
    pid = sim.popen.pid
    stat = Path(f"/proc/{pid}/stat")
    c0, w0 = _cpu_ticks(stat), time.monotonic()
    time.sleep(2)
    cpu = (_cpu_ticks(stat) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - w0)
    assert cpu < 0.25, f"idle sim uses {cpu:.0%} of a core"
    t1 = time.monotonic()
    assert sim.stop() == 0
    assert time.monotonic() - t1 < 8


def test_bframes_option_gives_a_stream_with_b_frames(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif", "--bframes")
    url = sim.cameras[0]["rtsp_sub"]
    with _open(url) as c:
        stream = c.streams.video[0]
        types = [f.pict_type for _, f in zip(range(30), c.decode(stream), strict=False)]
    assert av.video.frame.PictureType.B in types, types


def test_hostile_rtsp_input_drops_that_connection_only(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif", "--rtsp-auth", "basic")
    cam = sim.cameras[0]
    addr = (cam["address"], cam["rtsp_port"])
    for junk in (b"\x16\x03\x01\x02\x00hello\r\n\r\n", b"A" * 20000 + b"\r\n\r\n",
                 b"DESCRIBE x RTSP/1.0\r\nContent-Length: -5\r\n\r\n",
                 b"OPTIONS * RTSP/1.0\r\nno colon here\r\n\r\n"):  # fmt: skip
        with socket.create_connection(addr, timeout=5) as s:
            s.sendall(junk)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass  # dropped: what we want
    client = RawRtsp(*addr)
    try:
        status, hdrs, _ = client.request("DESCRIBE", cam["rtsp_sub"])
        assert status == 401 and hdrs["www-authenticate"].startswith("Basic ")
        status, _, _ = client.request("DESCRIBE", cam["rtsp_sub"], Authorization="Basic ***")
        assert status == 401
        status, _, _ = client.request("DESCRIBE", cam["rtsp_sub"], Authorization="Basic 5ZCN")
        assert status == 401  # non-ASCII credentials are refused, not a crash
        token = base64.b64encode(b"admin:admin").decode()
        status, hdrs, body = client.request(
            "DESCRIBE", cam["rtsp_sub"], Authorization=f"Basic {token}"
        )
        assert status == 200 and b"a=rtpmap:96 H264/90000" in body
        assert b"sprop-parameter-sets=" in body and b"packetization-mode=1" in body
        auth = {"Authorization": f"Basic {token}"}
        track = cam["rtsp_sub"] + "/trackID=0"
        status, _, _ = client.request("SETUP", track, Transport="RTP/AVP;multicast", **auth)
        assert status == 461
        for bad in ("RTP/AVP/TCP;interleaved=300-301", "RTP/AVP;client_port=x-y"):
            assert client.request("SETUP", track, Transport=bad, **auth)[0] == 400
        status, _, _ = client.request("PLAY", cam["rtsp_sub"], **auth)
        assert status == 454  # no session was set up
    finally:
        client.close()


def test_motion_every_schedule_toggles_motion(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif", "--motion-every", "1",
                      "--motion-duration", "0.5")  # fmt: skip
    seen = set()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(httpx.get(f"{sim.control}/cameras/cam-01", timeout=5).json()["motion"])
        time.sleep(0.1)
    assert seen == {True, False}


@pytest.mark.parametrize("encoding", ["H264", "H265"])
async def test_a_joining_player_gets_a_keyframe_with_parameter_sets_at_once(encoding: str) -> None:
    profile = SimProfile("p", "P", 320, 180, 25, 250, encoding, 300, "/sub")
    cam = SimCamera(index=1, address="127.0.0.1", http_port=0, rtsp_port=0, profiles=[profile])
    enc = ProfileEncoder(cam, profile, Scene(1, "cam-01"), asyncio.get_running_loop())
    first: list = []
    second: list = []
    try:
        enc.subscribe(first.append)
        while len(first) < 10:
            await asyncio.sleep(0.02)
        enc.subscribe(second.append)
        while len(second) < 3:
            await asyncio.sleep(0.02)
    finally:
        await asyncio.to_thread(enc.close)
    assert first[0].keyframe and not any(u.keyframe for u in first[1:10])  # GOP is 250
    key = next(i for i, u in enumerate(second) if u.keyframe)
    assert key <= 1, [u.keyframe for u in second]
    types = (
        {n[0] & 0x1F for n in second[key].nals}
        if encoding == "H264"
        else {(n[0] >> 1) & 0x3F for n in second[key].nals}
    )
    assert types >= ({7, 8, 5} if encoding == "H264" else {32, 33, 34})
    assert all(u.payloads and max(len(p) for p in u.payloads) <= 1400 for u in second)


def test_ptz_moves_the_view_below_the_strip_only() -> None:
    scene = Scene(5, "cam-05")
    now = 1_795_000_000.0
    home = scene.render(640, 360, now, 0, False)
    top = int(360 * barcode.STRIP_HEIGHT_FRACTION)
    for ptz in ({"pan": 0.5}, {"tilt": -0.4}, {"zoom": 0.8}, {"pan": -1, "tilt": 1, "zoom": 1}):
        moved = scene.render(640, 360, now, 0, False, ptz)
        assert moved.shape == home.shape
        diff = np.abs(moved[top:360].astype(int) - home[top:360]).mean()
        assert diff > 3, (ptz, diff)
        assert np.array_equal(moved[:top], home[:top]), ptz
        assert barcode.decode(moved[:360]) == (int(now * 1000), 5)
    assert np.array_equal(scene.render(640, 360, now, 0, False, {"pan": "junk"}), home)


def test_max_sessions_refuses_extra_players_and_counts_them(sim_factory) -> None:
    sim = sim_factory("--base", _base(), *SMALL, "--no-onvif", "--max-sessions", "1")
    cam = sim.cameras[0]
    first = RawRtsp(cam["address"], cam["rtsp_port"])
    second = RawRtsp(cam["address"], cam["rtsp_port"])
    try:
        first.play(cam["rtsp_sub"])
        assert len(first.read_for(0.5)) > 0
        state = httpx.get(f"{sim.control}/cameras/cam-01", timeout=5).json()
        assert state["encoders"]["/sub"]["players"] == 1
        assert state["rtsp_sessions"] == 1
        assert state["encoders"]["/main"]["running"] is False
        track = cam["rtsp_sub"] + "/trackID=0"
        transport = "RTP/AVP/TCP;unicast;interleaved=0-1"
        assert second.request("SETUP", track, Transport=transport)[0] == 453
        first.close()
        deadline = time.monotonic() + 5
        while second.request("SETUP", track, Transport=transport)[0] != 200:
            assert time.monotonic() < deadline, "the freed slot was never given back"
            time.sleep(0.1)
    finally:
        first.close()
        second.close()
