"""The simulated camera's RTSP server (RFC 2326), one per camera, on its own address.

Methods: OPTIONS, DESCRIBE, SETUP (RTP/AVP/TCP interleaved or RTP/AVP UDP with
``client_port``), PLAY, PAUSE, TEARDOWN, GET_PARAMETER/SET_PARAMETER (keepalive).
One track per path (``/main``, ``/sub``); a session lives as long as its
control connection. A new player starts at a keyframe forced on its join.

Optional Basic or Digest authentication (``camera.rtsp_auth``) with the camera's
credentials, as real cameras do.

Faults (``camera.fault``): "stall" keeps TCP open but sends nothing — no RTP and
no RTSP replies, like a hung camera; "garbage" sends random bytes instead of RTP
packets and RTSP replies. ``camera.online`` False is handled by the runner,
which closes this server (:meth:`RtspServer.close`) and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import struct
import time
from email.utils import formatdate
from urllib.parse import urlsplit

from gateway.sim import rtp, rtsp_auth
from gateway.sim.camera import SimCamera
from gateway.sim.source import EncodedUnit, ProfileEncoder

log = logging.getLogger(__name__)

MAX_HEADER = 16 * 1024
MAX_BODY = 64 * 1024
TCP_BACKLOG_LIMIT = 2 * 1024 * 1024  # bytes queued to a slow TCP player before we drop
SR_INTERVAL_S = 2.0
SESSION_TIMEOUT_S = 60
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"


class RtspError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.headers = status, reason, headers or {}


class _UdpSink(asyncio.DatagramProtocol):
    """The server side of one UDP RTP or RTCP port; incoming datagrams are ignored."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]


class RtspServer:
    """Serves one camera's profiles; ``encoders`` maps rtsp_path → ProfileEncoder."""

    def __init__(self, camera: SimCamera, encoders: dict[str, ProfileEncoder]) -> None:
        self.camera = camera
        self.encoders = encoders
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[RtspConnection] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._on_client, self.camera.address, self.camera.rtsp_port, reuse_address=True
        )
        if self.camera.rtsp_port == 0:
            self.camera.rtsp_port = self.server.sockets[0].getsockname()[1]

    def sessions(self) -> int:
        """RTSP sessions set up on this camera now."""
        return sum(1 for c in self.connections if c.session_id)

    def close(self) -> None:
        """Stop listening and drop every connection (offline fault, shutdown)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for conn in list(self.connections):
            conn.abort()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RtspConnection(self, reader, writer)
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            conn.teardown()


class RtspConnection:
    """One RTSP control connection and the (single) session set up on it."""

    def __init__(
        self, server: RtspServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.camera = server.camera
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.peer: tuple[str, int] = (peer[0], peer[1])
        self.nonce = secrets.token_hex(16)
        self.session_id = ""
        self.encoder: ProfileEncoder | None = None
        self.track_url = ""
        self.sub_token: int | None = None
        self.interleaved: tuple[int, int] | None = None
        self.udp_rtp: _UdpSink | None = None
        self.udp_rtcp: _UdpSink | None = None
        self.client_ports: tuple[int, int] | None = None
        self.ssrc = struct.unpack("!I", os.urandom(4))[0]
        self.seq = secrets.randbelow(0x10000)
        self.ts_offset = secrets.randbelow(1 << 32)
        self.wait_keyframe = True
        self.packets = self.octets = 0
        self.last_sr = 0.0

    # -- request loop ------------------------------------------------------

    async def serve(self) -> None:
        try:
            while True:
                first = await self.reader.readexactly(1)
                if first == b"$":  # interleaved RTCP from the player (receiver reports)
                    head = await self.reader.readexactly(3)
                    await self.reader.readexactly(struct.unpack("!H", head[1:])[0])
                    continue
                raw = first + await self.reader.readuntil(b"\r\n\r\n")
                if len(raw) > MAX_HEADER:
                    raise ValueError("request header too long")
                method, uri, headers = _parse_request(raw)
                length = int(headers.get("content-length", "0") or 0)
                if not 0 <= length <= MAX_BODY:
                    raise ValueError("bad Content-Length")
                if length:
                    await self.reader.readexactly(length)
                await self._answer(method, uri, headers)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except (ValueError, UnicodeDecodeError) as err:
            log.info("%s: bad RTSP request from %s: %s", self.camera.id, self.peer[0], err)
        except Exception:
            log.exception("%s: RTSP connection from %s failed", self.camera.id, self.peer[0])
        finally:
            self.abort()

    async def _answer(self, method: str, uri: str, headers: dict[str, str]) -> None:
        fault = self.camera.fault
        if fault == "stall":
            return
        if fault == "garbage":
            self.writer.write(os.urandom(64 + secrets.randbelow(400)))
            return
        cseq = headers.get("cseq", "0")
        try:
            if method != "OPTIONS":
                self._check_auth(method, headers)
            extra, body = await self._dispatch(method, uri, headers)
            self._respond(cseq, 200, "OK", extra, body)
        except RtspError as err:
            self._respond(cseq, err.status, err.reason, err.headers)
        if method == "PLAY" and self.sub_token is None and self.encoder is not None:
            # after the reply is queued, so the player sees PLAY's 200 before any RTP
            self.wait_keyframe = True
            self.sub_token = self.encoder.subscribe(self._on_unit)

    def _respond(
        self, cseq: str, status: int, reason: str, extra: dict[str, str], body: bytes = b""
    ) -> None:
        lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}", "Server: GatewaySim/1.0"]
        lines.append(f"Date: {formatdate(usegmt=True)}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def _dispatch(
        self, method: str, uri: str, headers: dict[str, str]
    ) -> tuple[dict[str, str], bytes]:
        if method == "OPTIONS":
            return {"Public": PUBLIC}, b""
        if method == "DESCRIBE":
            sdp = await self.describe(uri)
            base = uri if uri.endswith("/") else uri + "/"
            return {"Content-Type": "application/sdp", "Content-Base": base}, sdp.encode()
        if method == "SETUP":
            return await self._setup(uri, headers), b""
        if method in ("PLAY", "PAUSE", "TEARDOWN", "GET_PARAMETER", "SET_PARAMETER"):
            if method != "GET_PARAMETER" or headers.get("session"):
                self._check_session(headers)
            session = {"Session": f"{self.session_id};timeout={SESSION_TIMEOUT_S}"}
            if method == "PLAY":
                if self.encoder is None:
                    raise RtspError(455, "Method Not Valid in This State")
                rtptime = (self.ts_offset + int(time.time() * 90000)) & 0xFFFFFFFF
                info = f"url={self.track_url};seq={self.seq & 0xFFFF};rtptime={rtptime}"
                return {**session, "Range": "npt=0.000-", "RTP-Info": info}, b""
            if method == "PAUSE":
                self._unsubscribe()
            if method == "TEARDOWN":
                self.teardown()
            return (session if self.session_id else {}), b""
        raise RtspError(501, "Not Implemented")

    # -- methods -----------------------------------------------------------

    def _profile_encoder(self, uri: str) -> ProfileEncoder:
        path = urlsplit(uri).path if "://" in uri else uri
        first = "/" + path.strip("/").split("/")[0]
        enc = self.server.encoders.get(first)
        if enc is None:
            raise RtspError(404, "Not Found")
        return enc

    async def describe(self, uri: str) -> str:
        enc = self._profile_encoder(uri)
        sets = await enc.parameter_sets()
        return rtp.sdp(
            self.camera.address, f"{self.camera.id} {enc.profile.name}", enc.profile, sets
        )

    async def _setup(self, uri: str, headers: dict[str, str]) -> dict[str, str]:
        enc = self._profile_encoder(uri)
        if self.encoder is not None and enc is not self.encoder:
            raise RtspError(459, "Aggregate Operation Not Allowed")
        if self.sub_token is not None:
            raise RtspError(455, "Method Not Valid in This State")
        limit = self.camera.max_sessions
        if not self.session_id and limit and self.server.sessions() >= limit:
            # what cameras answer when their few streaming slots are taken
            raise RtspError(453, "Not Enough Bandwidth")
        transport = headers.get("transport", "")
        spec = transport.split(",")[0].strip()
        parts = [x.strip() for x in spec.split(";")]
        params = dict(x.partition("=")[::2] if "=" in x else (x.lower(), "") for x in parts[1:])
        proto = parts[0].upper()
        if "multicast" in params:
            raise RtspError(461, "Unsupported Transport")
        if proto == "RTP/AVP/TCP":
            self.interleaved = _pair(params.get("interleaved", "0-1"), 0, 255)
            reply = f"RTP/AVP/TCP;unicast;interleaved={self.interleaved[0]}-{self.interleaved[1]}"
        elif proto in ("RTP/AVP", "RTP/AVP/UDP"):
            if "client_port" not in params:
                raise RtspError(461, "Unsupported Transport")
            self.client_ports = _pair(params["client_port"], 1, 65535)
            await self.open_udp()
            sp = self._udp_ports()
            reply = (
                f"RTP/AVP;unicast;client_port={self.client_ports[0]}-{self.client_ports[1]};"
                f"server_port={sp[0]}-{sp[1]};ssrc={self.ssrc:08X}"
            )
        else:
            raise RtspError(461, "Unsupported Transport")
        self.encoder = enc
        self.track_url = uri
        if not self.session_id:
            self.session_id = secrets.token_hex(8).upper()
        return {"Transport": reply, "Session": f"{self.session_id};timeout={SESSION_TIMEOUT_S}"}

    def _udp_ports(self) -> tuple[int, int]:
        assert self.udp_rtp and self.udp_rtp.transport and self.udp_rtcp and self.udp_rtcp.transport
        return (
            self.udp_rtp.transport.get_extra_info("sockname")[1],
            self.udp_rtcp.transport.get_extra_info("sockname")[1],
        )

    async def open_udp(self) -> None:
        """Bind this session's server RTP and RTCP ports on the camera's address."""
        if self.udp_rtp is not None:
            return
        loop = asyncio.get_running_loop()
        _, self.udp_rtp = await loop.create_datagram_endpoint(
            _UdpSink, local_addr=(self.camera.address, 0)
        )
        _, self.udp_rtcp = await loop.create_datagram_endpoint(
            _UdpSink, local_addr=(self.camera.address, 0)
        )

    def _check_session(self, headers: dict[str, str]) -> None:
        given = headers.get("session", "").split(";")[0].strip()
        if not self.session_id or given != self.session_id:
            raise RtspError(454, "Session Not Found")

    def _check_auth(self, method: str, headers: dict[str, str]) -> None:
        cam = self.camera
        mode = cam.rtsp_auth
        given = headers.get("authorization", "")
        if mode == "none" or rtsp_auth.verify(
            mode, method, given, cam.username, cam.password, self.nonce
        ):
            return
        raise RtspError(
            401, "Unauthorized", {"WWW-Authenticate": rtsp_auth.challenge(mode, self.nonce)}
        )

    # -- media -------------------------------------------------------------

    def _on_unit(self, unit: EncodedUnit) -> None:
        fault = self.camera.fault
        if self.writer.is_closing():
            return
        if fault != "normal":
            self.wait_keyframe = True  # resume on a fresh keyframe when the fault ends
            if fault == "garbage":
                self._send_raw(os.urandom(200 + secrets.randbelow(1200)))
            return
        if self.interleaved and self.writer.transport.get_write_buffer_size() > TCP_BACKLOG_LIMIT:
            # the player is slower than the camera: drop until a keyframe
            self.wait_keyframe = True
            return
        if self.wait_keyframe and not unit.keyframe:
            if self.encoder is not None:
                self.encoder.request_keyframe()
            return
        self.wait_keyframe = False
        enc = self.encoder
        assert enc is not None
        pt = rtp.PT_JPEG if enc.profile.encoding == "JPEG" else rtp.PT_DYNAMIC
        ts = (self.ts_offset + int(unit.wall * 90000)) & 0xFFFFFFFF
        last = len(unit.payloads) - 1
        chunks: list[bytes] = []
        for i, payload in enumerate(unit.payloads):
            pkt = rtp.header(i == last, pt, self.seq, ts, self.ssrc) + payload
            self.seq = (self.seq + 1) & 0xFFFF
            self.packets += 1
            self.octets += len(payload)
            chunks.append(pkt)
        now = time.time()
        sr = None
        if now - self.last_sr > SR_INTERVAL_S:
            self.last_sr = now
            sr = rtp.sender_report(self.ssrc, unit.wall, ts, self.packets, self.octets)
        if self.interleaved:
            ch_rtp, ch_rtcp = self.interleaved
            out = [b"$" + bytes((ch_rtp,)) + struct.pack("!H", len(c)) + c for c in chunks]
            if sr:
                out.append(b"$" + bytes((ch_rtcp,)) + struct.pack("!H", len(sr)) + sr)
            self.writer.write(b"".join(out))
        elif self.udp_rtp and self.udp_rtp.transport and self.client_ports:
            dest = (self.peer[0], self.client_ports[0])
            for c in chunks:
                self.udp_rtp.transport.sendto(c, dest)
            if sr and self.udp_rtcp and self.udp_rtcp.transport:
                self.udp_rtcp.transport.sendto(sr, (self.peer[0], self.client_ports[1]))

    def _send_raw(self, data: bytes) -> None:
        if self.interleaved or not (self.udp_rtp and self.client_ports):
            self.writer.write(data)
        elif self.udp_rtp.transport:
            self.udp_rtp.transport.sendto(data, (self.peer[0], self.client_ports[0]))

    # -- teardown ----------------------------------------------------------

    def _unsubscribe(self) -> None:
        if self.sub_token is not None and self.encoder is not None:
            self.encoder.unsubscribe(self.sub_token)
        self.sub_token = None

    def teardown(self) -> None:
        """End the session (media stops, UDP ports close); the connection may stay."""
        self._unsubscribe()
        for sink in (self.udp_rtp, self.udp_rtcp):
            if sink is not None and sink.transport is not None:
                sink.transport.close()
        self.udp_rtp = self.udp_rtcp = None
        self.encoder = None
        self.session_id = ""

    def abort(self) -> None:
        """Drop the connection at once (offline fault, bad input, shutdown)."""
        self.teardown()
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


def _pair(text: str, low: int, high: int) -> tuple[int, int]:
    """``"a-b"`` (or ``"a"``, meaning a and a+1) as two ints within [low, high]."""
    a, _, b = text.partition("-")
    try:
        first = int(a)
        second = int(b) if b else first + 1
    except ValueError:
        raise RtspError(400, "Bad Request") from None
    if not (low <= first <= high and low <= second <= high):
        raise RtspError(400, "Bad Request")
    return first, second


def _parse_request(raw: bytes) -> tuple[str, str, dict[str, str]]:
    text = raw.decode("utf-8")
    lines = text.split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("RTSP/"):
        raise ValueError(f"not an RTSP request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line: {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1], headers
