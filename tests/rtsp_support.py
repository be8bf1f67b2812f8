"""A small RTSP server for stream tests: loops an encoded clip over RTP, with faults.

Not ours in the sense that matters: it is not the gateway's code path, it speaks
plain RFC 2326 / RFC 6184 / RFC 7798 to FFmpeg's RTSP client. It serves TCP
interleaved or UDP, counts sessions, and injects the faults the simulator offers:
``offline`` (sessions dropped, connections refused), ``online``, ``stall`` (the TCP
connection stays up, nothing is sent) and ``garbage`` (random bytes on the wire).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import av
import numpy as np

from gateway.media.annexb import split_annexb
from gateway.media.nal import nal_type, parameter_set_types

MTU = 1400


async def until(cond: Callable[[], object], timeout: float, what: str) -> float:
    """Wait for ``cond`` to hold; return the seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@dataclass
class Clip:
    codec: str  # "h264" | "hevc"
    width: int
    height: int
    fps: int
    units: list[tuple[bytes, int, int, bool]]  # Annex B data, pts, dts (90 kHz), key
    params: dict[int, bytes] = field(default_factory=dict)

    @property
    def duration_90k(self) -> int:
        return len(self.units) * 90000 // self.fps


def pattern(width: int, height: int, i: int) -> np.ndarray:
    """A moving picture (so encoders produce real P-frames), RGB."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x + 4 * i) % 256
    img[..., 1] = (y + 2 * i) % 256
    img[..., 2] = ((x // 32 + y // 32 + i) % 2) * 200
    return img


@lru_cache(maxsize=8)
def make_clip(
    codec: str = "h264",
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    gop: int = 25,
    frames: int = 50,
    bframes: bool = False,
    bitrate_kbps: int = 1500,
) -> Clip:
    """Encode a short looping clip (cached per process)."""
    name = "libx265" if codec == "hevc" else "libx264"
    ctx = av.CodecContext.create(name, "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = bitrate_kbps * 1000
    bf = 2 if bframes else 0
    if codec == "hevc":
        ctx.options = {
            "preset": "ultrafast",
            "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bf}:log-level=error",
        }
    else:
        ctx.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bf}",
        }
    scale = 90000 // fps
    units: list[tuple[bytes, int, int, bool]] = []
    for i in range(frames + 1):
        packets = []
        if i < frames:
            frame = av.VideoFrame.from_ndarray(pattern(width, height, i), format="rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            packets = ctx.encode(frame)
        else:
            packets = ctx.encode(None)
        for p in packets:
            units.append((bytes(p), p.pts * scale, p.dts * scale, p.is_keyframe))
    params: dict[int, bytes] = {}
    for data, *_ in units:
        for nal in split_annexb(data):
            t = nal_type(codec, nal)
            if t in parameter_set_types(codec):
                params.setdefault(t, nal)
    return Clip(codec, width, height, fps, units, params)


class RtspTestServer:
    """Serves one clip at ``url``; see the module docstring."""

    def __init__(
        self, clip: Clip, host: str = "127.0.0.1", port: int = 0, *, strip_params: bool = False
    ) -> None:
        self.clip = clip
        self.host = host
        self.strip_params = strip_params
        self.mode = "online"
        self.connections = 0  # TCP connections accepted, ever
        self.plays = 0  # PLAY requests, ever
        self._active: set[socket.socket] = set()
        self._playing: set[int] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._closed = False
        self.port = port
        self._listen()

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}/stream"

    @property
    def sessions(self) -> int:
        """RTSP sessions playing now."""
        with self._lock:
            return len(self._playing)

    def _listen(self) -> None:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind((self.host, self.port))
        self.port = lst.getsockname()[1]
        lst.listen(16)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def fault(self, mode: str) -> None:
        """``offline`` | ``online`` | ``stall`` | ``garbage``."""
        if mode == "offline":
            self.mode = "offline"
            self._drop_all()
        elif mode == "online":
            self.mode = "online"
            if self._listener is None:
                self._listen()
        elif mode in ("stall", "garbage"):
            self.mode = mode
        else:
            raise ValueError(mode)

    def _drop_all(self) -> None:
        lst, self._listener = self._listener, None
        if lst is not None:
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            lst.close()
        with self._lock:
            conns = list(self._active)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._drop_all()

    # -- connections ------------------------------------------------------------------
    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                conn, peer = lst.accept()
            except OSError:
                return
            self.connections += 1
            with self._lock:
                self._active.add(conn)
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        wlock = threading.Lock()
        stop = threading.Event()
        udp: list[tuple[str, int]] = []
        reader = conn.makefile("rb")
        try:
            while True:
                first = reader.read(1)
                if not first:
                    return
                if first == b"$":  # interleaved RTCP from the client
                    head = reader.read(3)
                    if len(head) < 3:
                        return
                    reader.read(struct.unpack("!H", head[1:])[0])
                    continue
                lines = [first + reader.readline()]
                while lines[-1] not in (b"\r\n", b"\n", b""):
                    lines.append(reader.readline())
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                if int(headers.get("content-length", "0") or 0):
                    reader.read(int(headers["content-length"]))
                method = lines[0].split(b" ")[0].decode("latin-1")
                reply = self._answer(method, headers, peer, udp, conn, wlock, stop)
                with wlock:
                    conn.sendall(reply)
        except OSError:
            return
        finally:
            stop.set()
            with self._lock:
                self._active.discard(conn)
                self._playing.discard(id(conn))
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, method, headers, peer, udp, conn, wlock, stop) -> bytes:
        cseq = headers.get("cseq", "0")
        extra = ""
        body = b""
        if method == "OPTIONS":
            extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n"
        elif method == "DESCRIBE":
            body = self._sdp().encode()
            extra = f"Content-Type: application/sdp\r\nContent-Base: {self.url}/\r\n"
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "client_port=" in transport:
                ports = transport.split("client_port=")[1].split(";")[0].split("-")
                udp.append((peer[0], int(ports[0])))
                extra = f"Transport: RTP/AVP;unicast;client_port={ports[0]}-{ports[1]}\r\n"
            else:
                extra = "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"
            extra += "Session: 12345678;timeout=60\r\n"
        elif method == "PLAY":
            extra = "Session: 12345678\r\n"
            self.plays += 1
            with self._lock:
                self._playing.add(id(conn))
            threading.Thread(
                target=self._send, args=(conn, wlock, stop, udp[:1]), daemon=True
            ).start()
        elif method == "TEARDOWN":
            stop.set()
            with self._lock:
                self._playing.discard(id(conn))
        head = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    def _sdp(self) -> str:
        c = self.clip
        b64 = {t: base64.b64encode(v).decode() for t, v in c.params.items()}
        if c.codec == "hevc":
            rtpmap = "H265/90000"
            fmtp = f"sprop-vps={b64[32]};sprop-sps={b64[33]};sprop-pps={b64[34]}"
        else:
            rtpmap = "H264/90000"
            fmtp = f"packetization-mode=1;sprop-parameter-sets={b64[7]},{b64[8]}"
        return (
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
            f"m=video 0 RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\na=fmtp:96 {fmtp}\r\n"
            "a=control:track1\r\n"
        )

    # -- media --------------------------------------------------------------------------
    def _send(self, conn, wlock, stop, udp) -> None:
        clip = self.clip
        usock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if udp else None
        seq = 0
        start = time.monotonic()
        k = 0
        try:
            while not stop.is_set():
                due = start + k / clip.fps
                delay = due - time.monotonic()
                if delay > 0:
                    stop.wait(delay)
                    if stop.is_set():
                        return
                data, pts, _dts, _key = clip.units[k % len(clip.units)]
                ts = (pts + (k // len(clip.units)) * clip.duration_90k + 1000) & 0xFFFFFFFF
                k += 1
                if self.mode == "stall":
                    continue
                if self.mode == "garbage":
                    chunks = [os.urandom(900)]
                else:
                    chunks = [
                        self._rtp(p, m, seq + i, ts)
                        for i, (p, m) in enumerate(self._payloads(data))
                    ]
                    seq = (seq + len(chunks)) & 0xFFFF
                for rtp in chunks:
                    if usock is not None:
                        usock.sendto(rtp, udp[0])
                    else:
                        framed = (
                            rtp
                            if self.mode == "garbage"
                            else b"$\x00" + struct.pack("!H", len(rtp)) + rtp
                        )
                        with wlock:
                            conn.sendall(framed)
        except OSError:
            return
        finally:
            if usock is not None:
                usock.close()

    @staticmethod
    def _rtp(payload: bytes, marker: bool, seq: int, ts: int) -> bytes:
        return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, seq, ts, 0x1234) + payload

    def _payloads(self, data: bytes) -> list[tuple[bytes, bool]]:
        codec = self.clip.codec
        nals = split_annexb(data)
        if self.strip_params:
            nals = [n for n in nals if nal_type(codec, n) not in parameter_set_types(codec)]
        out: list[tuple[bytes, bool]] = []
        for nal in nals:
            if len(nal) <= MTU:
                out.append((nal, False))
                continue
            if codec == "hevc":
                t = nal_type(codec, nal)
                head = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
                body, fu = nal[2:], t
            else:
                head = bytes([(nal[0] & 0xE0) | 28])
                body, fu = nal[1:], nal[0] & 0x1F
            chunks = [body[i : i + MTU] for i in range(0, len(body), MTU)]
            for i, chunk in enumerate(chunks):
                flags = (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
                out.append((head + bytes([flags | fu]) + chunk, False))
        if out:
            out[-1] = (out[-1][0], True)
        return out


def main() -> None:
    """``python -m tests.rtsp_support --codec h264 --size 1920x1080``: serve until killed."""
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codec", default="h264", choices=["h264", "hevc"])
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate-kbps", type=int, default=4000)
    parser.add_argument("--bframes", action="store_true")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    clip = make_clip(
        args.codec, width, height, args.fps, args.fps, 2 * args.fps, args.bframes, args.bitrate_kbps
    )
    server = RtspTestServer(clip)
    print(json.dumps({"ready": True, "url": server.url}), flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.close()


if __name__ == "__main__":
    main()
