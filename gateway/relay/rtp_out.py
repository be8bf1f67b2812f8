"""Passthrough RTP out: packetise an access unit once, send it to each viewer cheaply.

Why not aiortc's own loop: ``RTCRtpSender._run_rtp`` packetises every frame again
for every viewer, builds an ``RtpPacket`` object per packet, serialises it and awaits
three coroutines per packet (DTLS → ICE → aioice) before the ``sendto``. For a
passthrough camera every viewer sends the same payloads; only the header, the SRTP
keys and the address differ. So:

* :class:`SharedPayloads` packetises each access unit once per hub and codec (H.264:
  aiortc's own packetiser; H.265: RFC 7798, :mod:`gateway.relay.h265`) and keeps the
  last few for the other viewers of that hub in this process;
* :func:`install` replaces one sender's RTP loop with :func:`_run`, which per packet
  packs the 12-byte header and the header extensions the viewer negotiated (mid,
  abs-send-time) with ``struct``, protects it with the viewer's SRTP session and
  hands the access unit's packets to the nominated ICE pair's socket, with no
  coroutine per packet and, where Linux allows, one system call per run of
  equal-sized packets (:mod:`gateway.relay.udp_batch`).

What the sender does besides sending is kept: the retransmission history (NACK, RTX),
the figures of its RTCP sender reports, ``getStats`` counts, the track's end and the
sender's ``stop()``. Other codecs (transcoded video is an ``av.Frame`` that aiortc
must encode) keep aiortc's loop.

aiortc's private names are read here and nowhere else; ``tests/test_rtp_out.py``
checks the packets against aiortc's own, byte for byte, for the pinned aiortc.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from aioice.ice import StunProtocol
from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket
from aiortc.utils import random32

from gateway.media.access_unit import AccessUnit
from gateway.relay import ntp
from gateway.relay.h265 import H265Encoder
from gateway.relay.track import PassthroughTrack
from gateway.relay.udp_batch import GsoState, UdpBatcher
from gateway.streams.hub import Hub

log = logging.getLogger(__name__)

KEEP_UNITS = 8  # access units' payloads kept per hub and codec (viewers run close together)
_S = "_RTCRtpSender__"  # aiortc's name-mangled private attributes
_HEADER = struct.Struct("!BBHII")
Packetise = Callable[[bytes], list[bytes]]


def _h264(data: bytes) -> list[bytes]:
    return H264Encoder._packetize(H264Encoder._split_bitstream(data))


PACKETISERS: dict[str, Callable[[], Packetise]] = {
    "video/h264": lambda: _h264,
    "video/h265": lambda: H265Encoder().payloads,  # keeps the stream's parameter sets
}


class _Payloads:
    """One hub and codec: the last ``KEEP_UNITS`` access units' RTP payloads."""

    def __init__(self, packetise: Packetise) -> None:
        self.packetise = packetise
        self.units: OrderedDict[int, tuple[AccessUnit, list[bytes]]] = OrderedDict()


class SharedPayloads:
    """RTP payloads of each access unit, made once per hub and codec in this process."""

    def __init__(self, keep: int = KEEP_UNITS) -> None:
        self.keep = keep
        self._hubs: WeakKeyDictionary[Hub, dict[str, _Payloads]] = WeakKeyDictionary()
        self.packed = 0  # access units packetised
        self.reused = 0  # … and handed out again
        self.warned = False  # that aiortc's sender differs (rtp_out.fits)

    @staticmethod
    def supports(mime: str) -> bool:
        return mime.lower() in PACKETISERS

    def payloads(self, hub: Hub, mime: str, au: AccessUnit) -> list[bytes]:
        per_codec = self._hubs.get(hub)
        if per_codec is None:  # not setdefault: that makes a weakref and a dict per call
            per_codec = self._hubs[hub] = {}
        key = mime.lower()
        cache = per_codec.get(key)
        if cache is None:
            cache = per_codec[key] = _Payloads(PACKETISERS[key]())
        hit = cache.units.get(id(au))
        if hit is not None and hit[0] is au:
            self.reused += 1
            return hit[1]
        payloads = cache.packetise(au.data)
        self.packed += 1
        cache.units[id(au)] = (au, payloads)
        if len(cache.units) > self.keep:
            cache.units.popitem(last=False)
        return payloads


class _History:
    """The last ``RTP_HISTORY_SIZE`` packets for NACKs, as aiortc's sender reads them.

    aiortc keeps an ``RtpPacket`` per packet sent; this keeps a tuple and builds the
    packet only when a viewer asks for it again (``get``, from ``_retransmit``).
    """

    def __init__(self, pt: int, ssrc: int, mid: str | None, abs_send_time: bool) -> None:
        self.pt, self.ssrc, self.mid, self.abs = pt, ssrc, mid, abs_send_time
        self.slots: list[tuple[int, int, bool, bytes, int] | None] = [None] * RTP_HISTORY_SIZE

    def get(self, index: int) -> RtpPacket | None:
        slot = self.slots[index % RTP_HISTORY_SIZE]
        if slot is None:
            return None
        seq, ts, marker, payload, abs_time = slot
        packet = RtpPacket(
            payload_type=self.pt,
            marker=int(marker),
            sequence_number=seq,
            timestamp=ts,
            ssrc=self.ssrc,
            payload=payload,
        )
        packet.extensions.mid = self.mid
        if self.abs:
            packet.extensions.abs_send_time = abs_time
        return packet


class _Header:
    """The viewer's RTP header: first byte and extension block, abs-send-time in place.

    Made with aiortc's own serialiser (the extension ids are the viewer's), so the
    bytes are what aiortc would send; abs-send-time's offset is found by difference.
    """

    def __init__(self, ext_map: HeaderExtensionsMap, mid: str | None, pt: int) -> None:
        def serialise(abs_time: int) -> bytes:
            packet = RtpPacket(payload_type=pt)
            packet.extensions.mid = mid
            packet.extensions.abs_send_time = abs_time
            return packet.serialize(ext_map)

        low, high = serialise(0), serialise(0xFFFFFF)
        self.first = low[0]
        ext = low[12:]
        diff = [i for i in range(len(ext)) if ext[i] != high[12 + i]]
        self.has_abs = bool(diff)
        if diff:  # the 3 bytes of abs-send-time sit between these two
            self.before, self.after = ext[: diff[0]], ext[diff[0] + 3 :]
        else:
            self.before, self.after = ext, b""

    def extensions(self, abs_time: int) -> bytes:
        if not self.has_abs:
            return self.before
        return self.before + abs_time.to_bytes(3, "big") + self.after


SENDER_ATTRS = (
    "rtp_started",
    "rtp_exited",
    "track",
    "mid",
    "rtp_header_extensions_map",
    "rtp_history",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)
DTLS_ATTRS = ("_state", "_tx_srtp", "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets")


def fits(sender: RTCRtpSender) -> bool:
    """Whether this aiortc's sender has the private parts :func:`_run` uses.

    Checked when sending starts, so an aiortc whose internals moved falls back to its
    own loop (with a warning) instead of failing viewers.
    """
    attrs, dtls = vars(sender), sender.transport
    return (
        all(_S + name in attrs for name in SENDER_ATTRS)
        and all(hasattr(dtls, name) for name in DTLS_ATTRS)
        and hasattr(getattr(dtls.transport, "_connection", None), "_nominated")
    )


def install(
    sender: RTCRtpSender, track: PassthroughTrack, shared: SharedPayloads, gso: GsoState
) -> None:
    """Send ``track`` through ``sender`` with :func:`_run` once aiortc starts sending."""
    original = sender._run_rtp

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        if not shared.supports(codec.mimeType):
            await original(codec)
        elif not fits(sender):
            if not shared.warned:
                shared.warned = True
                log.warning("this aiortc's RTP sender differs: viewers use its own loop")
            await original(codec)
        else:
            await _run(sender, track, codec, shared, gso)

    sender._run_rtp = run_rtp  # type: ignore[method-assign]


async def _run(
    sender: RTCRtpSender,
    track: PassthroughTrack,
    codec: RTCRtpCodecParameters,
    shared: SharedPayloads,
    gso: GsoState,
) -> None:
    """aiortc's ``_run_rtp`` for passthrough: same start, end and bookkeeping."""
    attrs: dict[str, Any] = vars(sender)
    attrs[_S + "rtp_started"].set()
    out = UdpBatcher(gso)
    try:
        await _send(sender, attrs, track, codec, shared, out)
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:
        # aiortc's stop() waits for rtp_exited: never leave without setting it.
        log.exception("%s: passthrough RTP sender failed", track.camera_id)
    finally:
        out.close()
    track.stop()
    attrs[_S + "track"] = None
    attrs[_S + "rtp_exited"].set()


async def _send(
    sender: RTCRtpSender,
    attrs: dict[str, Any],
    track: PassthroughTrack,
    codec: RTCRtpCodecParameters,
    shared: SharedPayloads,
    out: UdpBatcher,
) -> None:
    dtls = sender.transport
    dtls_attrs: dict[str, Any] = vars(dtls)
    connection = dtls.transport._connection
    if codec.payloadType is None:
        raise ConnectionError("no payload type negotiated")
    pt, ssrc, mime = codec.payloadType, sender._ssrc, codec.mimeType
    mid = attrs[_S + "mid"]
    header = _Header(attrs[_S + "rtp_header_extensions_map"], mid, pt)
    history = _History(pt, ssrc, mid, header.has_abs)
    attrs[_S + "rtp_history"] = history
    slots = history.slots
    pack = _HEADER.pack
    first = header.first
    seq = random_sequence_number()
    origin = random32()
    while True:
        au, pts = await track.next_unit()
        if not sender._enabled:
            continue
        payloads = shared.payloads(track.hub, mime, au)
        if not payloads:
            continue
        if dtls._state != State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        protocol, addr = pair.protocol, pair.remote_addr
        protect = dtls._tx_srtp.protect
        now = ntp.current_ntp_time()
        abs_time = (now >> 14) & 0x00FFFFFF
        ext = header.extensions(abs_time)
        ts = (origin + pts) & 0xFFFFFFFF
        last = len(payloads) - 1
        octets = wire_bytes = 0
        datagrams: list[bytes] = []
        for i, payload in enumerate(payloads):
            marker = i == last
            data = protect(pack(first, pt | 0x80 if marker else pt, seq, ts, ssrc) + ext + payload)
            datagrams.append(data)
            slots[seq % RTP_HISTORY_SIZE] = (seq, ts, marker, payload, abs_time)
            seq = (seq + 1) & 0xFFFF
            octets += len(payload)
            wire_bytes += len(data)
        if type(protocol) is StunProtocol:  # UDP: the access unit in a few system calls
            out.send(protocol.transport, datagrams, addr)
        else:  # a relayed (TURN) pair: aioice's own coroutine per packet
            for data in datagrams:
                await protocol.send_data(data, addr)
        # What aiortc's loop records per packet, once per access unit: the figures of
        # the next RTCP sender report, getStats' counts and the DTLS transport's.
        attrs[_S + "ntp_timestamp"] = now
        attrs[_S + "rtp_timestamp"] = ts
        attrs[_S + "octet_count"] += octets
        attrs[_S + "packet_count"] += len(payloads)
        dtls_attrs["_RTCDtlsTransport__tx_bytes"] += wire_bytes
        dtls_attrs["_RTCDtlsTransport__tx_packets"] += len(payloads)
