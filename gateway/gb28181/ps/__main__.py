"""Send one camera as GB/T 28181 PS over RTP, without SIP: a field check of the media path.

    python -m gateway.gb28181.ps --rtsp rtsp://user:pass@cam/main --to 10.0.0.5:30000 \\
        [--transport udp|tcp-connect|tcp-listen] [--ssrc 0100000001] [--seconds 30]

Point it at a media server port that expects PS, e.g. one ZLMediaKit opened with
``/index/api/openRtpServer?port=0&tcp_mode=0&stream_id=check`` (``tcp_mode=1`` for
``tcp-connect``), and the stream shows up there as ``rtp/check``: the same bytes an
upper platform gets after an INVITE. Prints one JSON line when sending starts and
one with the figures when it stops (after ``--seconds``, Ctrl-C, or the stream's end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

from gateway.aio import within
from gateway.config import Settings
from gateway.gb28181.media_api import MediaError, MediaRequest, Transport
from gateway.gb28181.ps.backend import PsMediaBackend
from gateway.logs import redact
from gateway.streams.manager import StreamManager

CAMERA = "check"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.gb28181.ps", description=__doc__)
    p.add_argument("--rtsp", required=True, help="the camera's RTSP URL")
    p.add_argument("--to", default="", help="the media server's HOST:PORT (not for tcp-listen)")
    p.add_argument(
        "--transport", choices=["udp", "tcp-connect", "tcp-listen"], default="udp", help="RTP over"
    )
    p.add_argument("--listen", default="0.0.0.0", help="our address to send from or listen on")
    p.add_argument("--ssrc", default="0100000001", help="the SSRC (decimal, as in SDP y=)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    p.add_argument("--wait", type=float, default=8.0, help="seconds to wait for the camera")
    return p


async def run(args: argparse.Namespace) -> int:
    host, _, port = args.to.rpartition(":")
    try:
        ssrc, remote_port = int(args.ssrc), int(port or 0)
    except ValueError:
        print(f"error: bad --ssrc or --to port: {args.ssrc!r} {args.to!r}", file=sys.stderr)
        return 2
    streams = StreamManager(Settings(cameras=[{"id": CAMERA, "rtsp_url": args.rtsp}]))
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_ended(_call_id: str, reason: str) -> None:
        if not ended.done():
            ended.set_result(reason)

    backend = PsMediaBackend(streams, on_ended=on_ended, keyframe_wait_s=args.wait)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_ended, "", "stopped")
    await streams.start()
    try:
        transport: Transport = args.transport
        request = MediaRequest(
            "cli", CAMERA, "main", host, remote_port, ssrc, transport, local_host=args.listen
        )
        try:
            session = await backend.open(request)
        except MediaError as err:
            print(f"error: {redact(str(err))}", file=sys.stderr)
            return 1
        print(json.dumps({"sending": True, "local": f"{session.local_host}:{session.local_port}",
                          "ssrc": ssrc, "transport": transport}), flush=True)  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await within(asyncio.shield(ended), args.seconds or None)
        status = backend.status()
        figures = status["streams"][0] if status["streams"] else {}
        await backend.close("cli")
        reason = ended.result() if ended.done() else f"{args.seconds:g} s elapsed"
        print(json.dumps({"sending": False, "reason": reason, **figures}), flush=True)
        return 0
    finally:
        await backend.stop()
        await streams.stop()


def main() -> None:
    sys.exit(asyncio.run(run(build_parser().parse_args())))


if __name__ == "__main__":
    main()
