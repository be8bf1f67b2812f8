"""GB/T 28181 PS-over-RTP sender against WebRTC passthrough: CPU per stream.

    PYTHONPATH=. .venv/bin/python bench/bench_gb_ps.py [--quick]

Both paths take the same encoded access units (a 1080p25 H.264 clip, 2 s GOP,
4 Mbit/s, looped) and put them on a UDP socket on loopback:

- PS: ``PsMuxer.mux`` → ``RtpPacketizer.packetize`` → ``sendto`` per packet (what
  ``PsMediaBackend`` does per access unit);
- WebRTC passthrough: aiortc's ``H264Encoder.pack`` (RFC 6184 FU-A/STAP-A, what
  ``RTCRtpSender`` runs for a passthrough track) → ``RtpPacket.serialize`` → SRTP
  ``protect`` (libsrtp, as DTLS-SRTP requires) → ``sendto``.

CPU is this thread's time (``time.thread_time``) over the run, reported as percent
of one core per stream in real time (the clip's duration). Neither path decodes.
The whole-process comparison (a gateway serving one GB/T 28181 platform vs one WHEP
viewer) needs the signalling part wired in; this measures the part that differs.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from aiortc.codecs.h264 import H264Encoder  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402
from pylibsrtp import Policy, Session  # noqa: E402

from gateway.gb28181.ps.mux import PsMuxer  # noqa: E402
from gateway.gb28181.ps.rtp import RtpPacketizer  # noqa: E402
from gateway.media.access_unit import AccessUnit  # noqa: E402
from tests.rtsp_support import make_clip  # noqa: E402

FPS = 25


def ps_path(units: list[AccessUnit], sock: socket.socket) -> tuple[float, int]:
    mux, rtp = PsMuxer("h264"), RtpPacketizer(123456789)
    sent = 0
    t0 = time.thread_time()
    for au in units:
        frame = mux.mux(au)
        for p in rtp.packetize(frame.data, frame.timestamp):
            sock.send(p)
            sent += len(p)
    return time.thread_time() - t0, sent


def webrtc_path(units: list[AccessUnit], sock: socket.socket) -> tuple[float, int]:
    enc = H264Encoder()
    policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
    srtp = Session(policy=policy)
    seq, sent = 0, 0
    t0 = time.thread_time()
    for au in units:
        packet = av.Packet(au.data)
        packet.pts, packet.time_base = au.pts, au.time_base
        payloads, ts = enc.pack(packet)
        for i, payload in enumerate(payloads):
            rtp = RtpPacket(
                payload_type=102,
                marker=i == len(payloads) - 1,
                sequence_number=seq,
                timestamp=ts,
                ssrc=987654321,
            )
            rtp.payload = payload
            seq = (seq + 1) & 0xFFFF
            data = srtp.protect(rtp.serialize())
            sock.send(data)
            sent += len(data)
    return time.thread_time() - t0, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="720p, shorter run")
    parser.add_argument("--seconds", type=float, default=60.0, help="video seconds per path")
    args = parser.parse_args()
    w, h, kbps = (1280, 720, 2000) if args.quick else (1920, 1080, 4000)
    seconds = 10.0 if args.quick else args.seconds
    print(f"encoding a {w}x{h} {FPS} fps clip at {kbps} kbit/s ...", flush=True)
    clip = make_clip("h264", w, h, FPS, 2 * FPS, 4 * FPS, False, kbps)
    loops = int(seconds * FPS / len(clip.units)) + 1
    dur = clip.duration_90k
    units = [
        AccessUnit(data, pts + k * dur, dts + k * dur, Fraction(1, 90000), key, 0.0)
        for k in range(loops)
        for data, pts, dts, key in clip.units
    ]
    video_s = len(units) / FPS
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))  # nobody reads: the kernel drops, sending is what we time
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    mbps = sum(len(u.data) for u in units) * 8 / video_s / 1e6
    print(f"{len(units)} access units, {video_s:.0f} s of video, {mbps:.2f} Mbit/s")
    for name, fn in (("gb28181 ps/rtp", ps_path), ("webrtc passthrough", webrtc_path)):
        cpu, sent = fn(units, sender)
        print(
            f"{name:20s} cpu {cpu / video_s * 100:6.2f} % of a core per stream"
            f"  ({cpu / len(units) * 1e6:6.0f} us/frame, {sent * 8 / video_s / 1e6:.2f} Mbit/s)"
        )


if __name__ == "__main__":
    main()
