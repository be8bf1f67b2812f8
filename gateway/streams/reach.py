"""Is a camera's RTSP port answering? A bare TCP connect: no RTSP session is opened.

Used by the ingest's backoff to cut it short when a down camera returns, and by
the idle check that keeps the status of cameras nobody is streaming up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from gateway.streams import sockets

log = logging.getLogger(__name__)

PROBE_EVERY_S = 1.0  # how often a backoff probes a down camera's port


def rtsp_address(url: str) -> tuple[str, int] | None:
    """(host, port) of an rtsp:// URL, or None."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or 554
    except ValueError:
        return None
    return (host, port) if host and parts.scheme.lower() in ("rtsp", "rtsps") else None


async def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connect to ``host:port`` succeeds within ``timeout`` (any address)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            for family, kind, proto, _, addr in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                # Marked, so that a stream opening to this camera now never takes the
                # probe's socket for its own (see gateway.streams.sockets); closed first.
                with sockets.probe_socket(sock), sock, contextlib.suppress(OSError):
                    await loop.sock_connect(sock, addr)
                    return True
    except (OSError, TimeoutError):
        return False
    return False


async def backoff(url: str | None, delay: float, refused: bool) -> None:
    """Wait ``delay`` before an ingest's next attempt, cut short when a down camera returns.

    A camera that refuses or ignores TCP is probed with a bare connect once a
    second (one SYN, no RTSP session), and the wait ends as soon as its RTSP port
    answers: viewers see it again within about a second of its return, however
    long the backoff has grown. ``refused``: the last attempt found the port shut;
    if it answers now, the camera came back in between and the wait ends at once.
    A camera whose port answers but whose RTSP fails (wrong path, auth, still
    booting) keeps the plain backoff, so it is not hammered.
    """
    target = rtsp_address(url) if url else None
    if target is None or delay <= PROBE_EVERY_S:
        await asyncio.sleep(delay)
        return
    if await port_open(*target):
        if not refused:
            await asyncio.sleep(delay)
        return
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(PROBE_EVERY_S, left))
        if time.monotonic() < deadline and await port_open(*target):
            return


async def check_idle(
    camera_ids: Iterable[str],
    url_for: Callable[[str], Awaitable[str | None]],
    report: Callable[[str, str, str], None],
    concurrency: int = 32,
) -> None:
    """Report online/offline for each camera from whether its RTSP port answers."""
    gate = asyncio.Semaphore(concurrency)

    async def one(camera_id: str) -> None:
        async with gate:
            try:
                url = await url_for(camera_id)
            except Exception as err:
                log.debug("%s: no URL for the idle check: %s", camera_id, err)
                return
            target = rtsp_address(url) if url else None
            if target is None:
                return
            if await port_open(*target, timeout=2.0):
                report(camera_id, "online", "RTSP port answers (not streaming now)")
            else:
                report(camera_id, "offline", "RTSP port does not answer")

    await asyncio.gather(*(one(c) for c in camera_ids))


async def watch_idle(
    list_idle: Callable[[], list[str]],
    url_for: Callable[[str], Awaitable[str | None]],
    report: Callable[[str, str, str], None],
    every: float,
) -> None:
    """Run :func:`check_idle` over ``list_idle()`` every ``every`` seconds, forever."""
    await asyncio.sleep(1.0)
    while True:
        try:
            await check_idle(list_idle(), url_for, report)
        except Exception:
            log.exception("idle camera check failed")
        await asyncio.sleep(every)
