"""PsMediaBackend: live camera video to an upper platform as PS over RTP (GB/T 28181).

``open()`` leases the camera's hub from the stream manager (one ingest per camera,
shared with every other consumer), waits until it has a fresh keyframe, sets up the
RTP transport and starts a task that muxes and sends each access unit as it comes,
beginning with the hub's cached GOP so the platform's play timeout (about 10 s at
WVP) is never near. Nothing is decoded or transcoded: H.264 and H.265 go through as
they are (MJPEG and other codecs get the stream manager's shared H.264 transcode).

Bounded everywhere (ARCHITECTURE decision 4): the hub subscription drops whole GOPs
when the sender falls behind, and when a platform stops reading (the transport's
buffer passes ``max_buffered_bytes``) frames are dropped up to the next keyframe and
counted; a platform that reads nothing for ``stall_timeout_s`` loses its stream.
Over UDP the start-up burst (the cached GOP) is paced at ``udp_burst_bytes_per_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.gb28181.media_api import MediaError, MediaRequest, MediaSession
from gateway.gb28181.ps.mux import STREAM_TYPES, PsMuxer
from gateway.gb28181.ps.rtp import DEFAULT_MTU, RtpPacketizer, RtpSink, SinkError, open_sink
from gateway.media.access_unit import AccessUnit
from gateway.media.nal import sniff_codec
from gateway.media.params import ParameterSets
from gateway.streams.hub import Hub, HubClosed, Subscription, fresh_keyframe
from gateway.streams.manager import Lease, StreamManager
from gateway.urls import is_ip

log = logging.getLogger(__name__)

TRANSPORTS = ("udp", "tcp-listen", "tcp-connect")


@dataclass(eq=False)
class _Stream:
    request: MediaRequest
    lease: Lease
    sub: Subscription
    sink: RtpSink
    muxer: PsMuxer
    packetizer: RtpPacketizer
    params: ParameterSets
    opened: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    first_packet_s: float | None = None  # seconds from the open() call to the first packet
    frames_sent: int = 0
    frames_dropped: int = 0  # dropped here because the platform did not keep up
    end_reason: str = ""
    finished: bool = False

    def public(self) -> dict[str, Any]:
        r = self.request
        return {
            "call_id": r.call_id,
            "camera": r.camera_id,
            "profile": r.profile,
            "transport": r.transport,
            "remote": f"{r.remote_host}:{r.remote_port}",
            "local": f"{self.sink.local_host}:{self.sink.local_port}",
            "ssrc": r.ssrc,
            "codec": self.muxer.codec,
            "seconds": round(time.monotonic() - self.opened, 1),
            "first_packet_ms": (
                None if self.first_packet_s is None else round(self.first_packet_s * 1000, 1)
            ),
            "frames_sent": self.frames_sent,
            "bytes_sent": self.sink.bytes_sent,
            "frames_dropped": self.frames_dropped + self.sub.dropped,
        }


class PsMediaBackend:
    """The ``MediaBackend`` of :mod:`gateway.gb28181.media_api` (see the module docstring).

    ``on_ended(call_id, reason)`` is called when a stream ends by itself (camera gone,
    platform hung up or stopped reading) so the signalling side can send its BYE; it
    is not called for :meth:`close`.
    """

    def __init__(
        self,
        streams: StreamManager,
        *,
        on_ended: Callable[[str, str], None] | None = None,
        keyframe_wait_s: float = 8.0,
        connect_timeout_s: float = 5.0,
        accept_timeout_s: float = 20.0,
        stall_timeout_s: float = 15.0,
        max_buffered_bytes: int = 2 * 1024 * 1024,
        queue_size: int = 240,
        mtu: int = DEFAULT_MTU,
        udp_burst_bytes_per_s: float = 4_000_000,
    ) -> None:
        self.streams = streams
        self.on_ended = on_ended
        self.keyframe_wait_s = keyframe_wait_s
        self.connect_timeout_s = connect_timeout_s
        self.accept_timeout_s = accept_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_buffered_bytes = max_buffered_bytes
        self.queue_size = queue_size
        self.mtu = mtu
        self.udp_burst_bytes_per_s = udp_burst_bytes_per_s
        self._streams: dict[str, _Stream] = {}
        self._opening: set[str] = set()
        self._cancelled: set[str] = set()  # closed while still opening
        self.opened = 0
        self.rejected: Counter[str] = Counter()
        self.ended: Counter[str] = Counter()

    # -- MediaBackend ----------------------------------------------------------------------
    async def open(self, request: MediaRequest) -> MediaSession:
        started = time.monotonic()
        self._check(request)
        self._opening.add(request.call_id)
        try:
            stream = await self._open(request)
            stream.opened = started
        except MediaError as err:
            log.warning("%s: GB/T 28181 stream %s refused: %s", request.camera_id,
                        request.call_id, err)  # fmt: skip
            raise
        finally:
            self._opening.discard(request.call_id)
            cancelled = request.call_id in self._cancelled
            self._cancelled.discard(request.call_id)
        if cancelled:
            stream.sub.close()
            stream.lease.release()
            stream.sink.close()
            raise MediaError("the call ended while the stream was being opened")
        self._streams[request.call_id] = stream
        self.opened += 1
        stream.task = asyncio.create_task(self._run(stream), name=f"gb28181 ps {request.call_id}")
        log.info("%s: GB/T 28181 stream %s open (%s %s, %s:%d, ssrc %d)", request.camera_id,
                 request.call_id, stream.muxer.codec, request.transport, stream.sink.local_host,
                 stream.sink.local_port, request.ssrc)  # fmt: skip
        return MediaSession(
            request.call_id, stream.sink.local_host, stream.sink.local_port, request.ssrc
        )

    async def close(self, call_id: str) -> None:
        if call_id in self._opening:
            self._cancelled.add(call_id)
            return
        stream = self._streams.get(call_id)
        if stream is None or stream.task is None:
            return
        stream.end_reason = stream.end_reason or "closed by the platform"
        stream.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream.task
        # A task cancelled before its first step never ran its own cleanup.
        self._finish(stream, "closed", stream.end_reason)

    def playing(self) -> int:
        return len(self._streams)

    # -- lifecycle, status -----------------------------------------------------------------
    async def start(self) -> None:
        """Nothing to start: streams begin with ``open()`` (a part of ``gateway.app``)."""

    async def stop(self) -> None:
        """Stop every stream (gateway shutdown)."""
        await asyncio.gather(*(self.close(cid) for cid in list(self._streams)))

    def status(self) -> dict[str, Any]:
        return {
            "streams": [s.public() for s in self._streams.values()],
            "opened": self.opened,
            "ended": dict(self.ended),
            "rejected": dict(self.rejected),
        }

    def metrics(self) -> Iterable[Any]:
        from gateway.metrics import Sample

        yield Sample("gb28181_ps_streams", len(self._streams), help="PS/RTP streams to platforms")
        yield Sample("gb28181_ps_streams_opened_total", self.opened, type="counter")
        for reason, n in self.rejected.items():
            yield Sample("gb28181_ps_rejected_total", n, {"reason": reason}, type="counter")
        for kind, n in self.ended.items():
            yield Sample("gb28181_ps_ended_total", n, {"reason": kind}, type="counter")
        for s in self._streams.values():
            labels = {"camera": s.request.camera_id, "call_id": s.request.call_id}
            yield Sample("gb28181_ps_frames_sent", s.frames_sent, labels)
            yield Sample("gb28181_ps_frames_dropped", s.frames_dropped + s.sub.dropped, labels)

    # -- opening ---------------------------------------------------------------------------
    def _check(self, r: MediaRequest) -> None:
        problem = ""
        if not r.call_id or r.call_id in self._streams or r.call_id in self._opening:
            problem = f"call id {r.call_id!r} is empty or already streaming"
        elif r.transport not in TRANSPORTS:
            problem = f"unsupported media transport {r.transport!r}"
        elif r.transport != "tcp-listen" and not (
            is_ip(r.remote_host) and 0 < r.remote_port < 65536
        ):
            problem = f"bad media address {r.remote_host!r}:{r.remote_port} (an IP and a port)"
        elif not is_ip(r.local_host) or (r.remote_host and not is_ip(r.remote_host)):
            # IP literals only: no name lookups on the media path (SDP c= lines carry IPs).
            problem = f"bad media address {r.local_host!r} / {r.remote_host!r}"
        elif not 0 <= r.ssrc <= 0xFFFFFFFF:
            problem = f"SSRC {r.ssrc} does not fit 32 bits"
        elif not 0 <= r.payload_type <= 127:
            problem = f"bad RTP payload type {r.payload_type}"
        if problem:
            self.rejected["request"] += 1
            raise MediaError(problem)

    async def _open(self, r: MediaRequest) -> _Stream:
        lease = self._acquire(r, None)
        try:
            first = await self._wait_keyframe(r, lease)
            codec = _codec_of(lease.hub, first)
            if codec not in STREAM_TYPES:
                # PS carries H.264/H.265 here; other codecs get the shared transcode.
                log.info("%s: %s source, GB/T 28181 stream gets the h264 transcode",
                         r.camera_id, codec)  # fmt: skip
                main, lease = lease, self._acquire(r, "h264")
                main.release()
                first = await self._wait_keyframe(r, lease)
                codec = "h264"
            sub = lease.hub.subscribe(f"gb28181:{r.call_id}", self.queue_size)
        except BaseException:
            lease.release()
            raise
        try:
            sink = await open_sink(
                r.transport, r.local_host, r.remote_host, r.remote_port, self.connect_timeout_s
            )
        except SinkError as err:
            sub.close()
            lease.release()
            self.rejected["transport"] += 1
            raise MediaError(str(err)) from None
        except BaseException:
            sub.close()
            lease.release()
            raise
        info = lease.hub.info
        return _Stream(
            request=r,
            lease=lease,
            sub=sub,
            sink=sink,
            muxer=PsMuxer(codec),
            packetizer=RtpPacketizer(r.ssrc, r.payload_type, self.mtu),
            params=ParameterSets(codec, info.extradata if info else b""),
        )

    def _acquire(self, r: MediaRequest, variant: str | None) -> Lease:
        try:
            return self.streams.acquire(
                r.camera_id, r.profile, variant=variant, consumer=f"gb28181:{r.call_id}"
            )
        except KeyError:  # UnknownCamera
            self.rejected["unknown"] += 1
            raise MediaError(f"unknown camera {r.camera_id!r}") from None
        except (ValueError, RuntimeError) as err:
            self.rejected["unavailable"] += 1
            raise MediaError(f"camera {r.camera_id}: {err}") from None

    async def _wait_keyframe(self, r: MediaRequest, lease: Lease) -> bytes:
        """The cached GOP's keyframe once the hub has fresh video, else MediaError."""
        data = await fresh_keyframe(lease.hub, self.keyframe_wait_s, poll=0.02)
        if data is not None:
            return data
        self.rejected["offline"] += 1
        error = next(
            (row["last_error"] for row in self.streams.stats() if row["key"] == lease.key),
            "",
        )  # already redacted by the ingest
        raise MediaError(
            f"camera {r.camera_id} is offline: no video within {self.keyframe_wait_s:g} s"
            + (f" ({error})" if error else "")
        )

    # -- sending ---------------------------------------------------------------------------
    async def _run(self, s: _Stream) -> None:
        cam = s.request.camera_id
        kind, reason = "error", ""
        try:
            await s.sink.ready(self.accept_timeout_s)
            kind, reason = await self._send_loop(s)
        except SinkError as err:
            kind, reason = "platform-absent", str(err)
        except asyncio.CancelledError:
            kind, reason = "closed", s.end_reason or "cancelled"
            raise
        except Exception as err:  # a bug here must end this stream only, loudly
            reason = f"sender failed: {err}"
            log.exception("%s: GB/T 28181 stream %s failed", cam, s.request.call_id)
        finally:
            self._finish(s, kind, reason)

    async def _send_loop(self, s: _Stream) -> tuple[str, str]:
        """Send until the camera, the platform or a timeout ends it: (kind, reason)."""
        need_key = False
        stalled_since: float | None = None
        while True:
            try:
                async with asyncio.timeout(self.stall_timeout_s):
                    au = await s.sub.get()
            except TimeoutError:
                return "camera-stalled", f"no video from the camera for {self.stall_timeout_s:g} s"
            except HubClosed:
                return "camera-ended", "the camera stream ended"
            if s.sink.lost is not None:
                return "platform-gone", s.sink.lost
            if s.sink.buffered() > self.max_buffered_bytes:
                # The platform is not reading: drop up to the next keyframe.
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > self.stall_timeout_s:
                    reason = f"the platform stopped reading for {self.stall_timeout_s:g} s"
                    return "platform-stalled", reason
                need_key = True
            else:
                stalled_since = None
            if (need_key and not au.keyframe) or stalled_since is not None:
                s.frames_dropped += 1
                continue
            need_key = False
            if au.keyframe:
                au = _with_data(au, s.params.fix(au.data, True))
            frame = s.muxer.mux(au)
            s.sink.send(s.packetizer.packetize(frame.data, frame.timestamp))
            s.frames_sent += 1
            if s.first_packet_s is None:
                s.first_packet_s = time.monotonic() - s.opened
            if s.request.transport == "udp" and s.sub.qsize:
                # Catching up (the cached GOP at start): pace by bytes so the burst does
                # not overflow the platform's socket buffer; TCP paces itself.
                await asyncio.sleep(len(frame.data) / self.udp_burst_bytes_per_s)

    def _finish(self, s: _Stream, kind: str, reason: str) -> None:
        if s.finished:
            return
        s.finished = True
        s.sub.close()
        s.lease.release()
        s.sink.close()
        self._streams.pop(s.request.call_id, None)
        s.end_reason = reason
        self.ended[kind] += 1
        log.info("%s: GB/T 28181 stream %s ended (%s) after %.1f s, %d frames sent, %d dropped",
                 s.request.camera_id, s.request.call_id, reason, time.monotonic() - s.opened,
                 s.frames_sent, s.frames_dropped + s.sub.dropped)  # fmt: skip
        if kind != "closed" and self.on_ended is not None:
            try:
                self.on_ended(s.request.call_id, reason)
            except Exception:
                log.exception("%s: on_ended callback failed", s.request.camera_id)


def _with_data(au: AccessUnit, data: bytes) -> AccessUnit:
    return au if data is au.data else replace(au, data=data)


def _codec_of(hub: Hub, keyframe: bytes) -> str:
    """The hub's codec, or (no stream info yet) a guess from the keyframe's NAL units."""
    if hub.info is not None and hub.info.codec:
        return hub.info.codec
    return sniff_codec(keyframe) or "h264"
