"""Child side: answering the parent's requests on the uplink connection.

Each request runs in its own task and is answered by request id. Streams run until
the parent closes them (or the link drops): one hub subscription per open channel,
and the parent opens one channel per camera stream whatever its number of viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from gateway.cascade import access
from gateway.cascade import protocol as p
from gateway.cascade.access import AccessError
from gateway.cascade.inspect import Inspections
from gateway.cascade.local import Local
from gateway.core import Core
from gateway.media.access_unit import StreamInfo
from gateway.store import events as event_store
from gateway.streams.hub import Hub, HubClosed
from gateway.streams.manager import Lease

log = logging.getLogger(__name__)
MAX_CONCURRENT = 64


class _Stream:
    def __init__(self, channel: int, path: str, profile: str, variant: str | None) -> None:
        self.channel = channel
        self.path = path
        self.profile = profile
        self.variant = variant
        self.frames = 0
        self.bytes = 0
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None


class MapAnswers(Protocol):
    """The maps part, as the parent's ``map`` and ``map_image`` requests use it.

    A protocol rather than ``gateway.maps.service.Maps``: the maps part reaches its
    children through the cascade, so importing it here would close an import circle.
    """

    async def answer(
        self, op: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes | None]: ...


class Sender(Protocol):
    """The uplink connection, as the answers to the parent go out on it."""

    async def send_text(self, msg: p.BaseModel) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...


class RequestServer:
    """Runs the parent's requests against this gateway (and, by path, its children)."""

    def __init__(
        self,
        core: Core,
        here: Local,
        uplink: Sender,
        inspections: Inspections,
        maps: MapAnswers | None,
    ) -> None:
        self.db = core.db
        self.subscriber_buffer = core.settings.streams.subscriber_buffer
        self.here = here
        self.uplink = uplink
        self.inspections = inspections
        self.maps = maps
        self.streams: dict[int, _Stream] = {}
        self._busy = 0
        self.requests = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def handle(self, req: p.Request) -> None:
        self.requests += 1
        if req.op == "open_stream":
            self._open(req)
            return
        if self._busy >= MAX_CONCURRENT:
            self._spawn(self._respond(req, 503, "too many requests at once"))
            return
        self._spawn(self._run(req))

    async def _respond(
        self, req: p.Request, status: int = 200, error: str = "", data: dict[str, Any] | None = None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            await self.uplink.send_text(
                p.Response(
                    type="response",
                    id=req.id,
                    ok=status < 400,
                    status=status,
                    error=error[:500],
                    data=data or {},
                )
            )

    async def _run(self, req: p.Request) -> None:
        self._busy += 1
        try:
            await self._dispatch(req)
        except AccessError as err:
            await self._respond(req, err.status, str(err))
        except ConnectionError:
            pass  # the link went down; the parent fails its pending requests itself
        except Exception as err:
            log.exception("cascade request %s %s failed", req.op, req.path)
            await self._respond(req, 500, f"{req.op} failed: {type(err).__name__}")
        finally:
            self._busy -= 1

    async def _dispatch(self, req: p.Request) -> None:
        here, params = self.here, req.params
        if req.op == "close_stream":
            stream = self.streams.pop(req.channel, None)
            if stream and stream.task:
                stream.task.cancel()
            await self._respond(req)
        elif req.op == "snapshot":
            body = await access.snapshot(here, req.path)
            await self._send_body(req, [body])
            await self._respond(req, data={"bytes": len(body), "content_type": "image/jpeg"})
        elif req.op == "inspection_snapshot":
            body = await access.inspection_snapshot(here, req.path)
            await self._send_body(req, [body])
            await self._respond(req, data={"bytes": len(body), "content_type": "image/jpeg"})
        elif req.op == "ptz":
            await self._respond(req, data=await access.ptz(here, req.path, params))
        elif req.op == "presets":
            await self._respond(req, data={"presets": await access.presets(here, req.path)})
        elif req.op == "recordings":
            items = await access.recordings(here, req.path, params)
            await self._respond(req, data={"recordings": items})
        elif req.op == "clip":
            total = 0
            async for chunk in access.clip(here, req.path, params):
                total += len(chunk)
                await self._send_body(req, [chunk])
            await self._respond(req, data={"bytes": total, "content_type": "video/mp4"})
        elif req.op == "event_snapshot":
            event_id = str(params.get("event_id", ""))[:64]
            jpeg: bytes | None = None
            if event_id:
                jpeg = await asyncio.to_thread(event_store.get_snapshot, self.db, event_id)
            if jpeg is None:
                raise AccessError(404, f"no snapshot for event {event_id!r}")
            await self._send_body(req, [jpeg])
            await self._respond(req, data={"bytes": len(jpeg), "content_type": "image/jpeg"})
        elif req.op == "record":
            seconds = float(params.get("seconds", 60))
            if not 0 < seconds <= 86400:
                raise AccessError(400, "seconds must be in (0, 86400]")
            reason = str(params.get("reason", "cascade"))[:200]
            await self._respond(req, data=await access.record(here, req.path, seconds, reason))
        elif req.op == "lock":
            await self._respond(req, data=await access.lock(here, req.path, params))
        elif req.op in ("map", "map_image"):
            maps = self.maps
            if maps is None:
                raise AccessError(404, "this gateway keeps no maps / 未启用电子地图")
            data, image = await maps.answer(req.op, params)
            if image is not None:
                await self._send_body(req, [image])
            await self._respond(req, data={**data, "bytes": len(image or b"")})
        elif req.op == "inspect":
            await self._respond(req, data=await self.inspections.answer(req.path, params))
        else:
            raise AccessError(400, f"unsupported op {req.op}")

    async def _send_body(self, req: p.Request, chunks: list[bytes]) -> None:
        if not req.channel:
            raise AccessError(400, f"{req.op} needs a channel for its body")
        for chunk in chunks:
            for i in range(0, len(chunk), access.CHUNK):
                await self.uplink.send_bytes(
                    p.encode_data(req.channel, chunk[i : i + access.CHUNK])
                )

    # -- streams -------------------------------------------------------------------
    def _open(self, req: p.Request) -> None:
        if not req.channel or req.channel in self.streams:
            self._spawn(self._respond(req, 400, "open_stream needs a fresh channel"))
            return
        profile = str(req.params.get("profile") or "main")[:32]
        variant = req.params.get("variant")
        variant = str(variant)[:32] if variant else None
        stream = _Stream(req.channel, req.path, profile, variant)
        self.streams[req.channel] = stream
        stream.task = self._spawn(self._stream(req, stream))

    async def _stream(self, req: p.Request, stream: _Stream) -> None:
        streams = self.here.streams
        path = stream.path
        lease: Lease | None = None
        try:
            if streams is None:
                raise AccessError(503, "the streams part is not running on this gateway")
            try:
                lease = streams.acquire(
                    path,
                    profile=stream.profile,
                    variant=stream.variant,
                    consumer=f"cascade:{stream.channel}",
                )
            except KeyError:
                raise AccessError(404, f"unknown camera {path!r} / 未知摄像机") from None
            except ValueError as err:
                raise AccessError(400, f"cannot open {path}: {err}") from None
            await self._respond(req, data={"channel": stream.channel})
            log.info("cascade stream %s/%s up on channel %d", path, stream.profile, stream.channel)
            await self._pump(lease.hub, stream)
        except AccessError as err:
            self.streams.pop(stream.channel, None)
            await self._respond(req, err.status, str(err))
        except HubClosed:
            await self._end(stream, "stream closed")
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as err:
            log.exception("cascade stream %s failed", path)
            await self._end(stream, f"failed: {type(err).__name__}")
        finally:
            self.streams.pop(stream.channel, None)
            if lease is not None:
                with contextlib.suppress(Exception):
                    lease.release()

    async def _end(self, stream: _Stream, reason: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.uplink.send_text(
                p.StreamEnd(type="stream_end", channel=stream.channel, reason=reason)
            )

    async def _pump(self, hub: Hub, stream: _Stream) -> None:
        """Send the hub's access units up, untouched (no decode at this hop)."""
        size = self.subscriber_buffer
        sub = hub.subscribe(f"cascade-up:{stream.channel}", maxsize=size)
        sent_info = None
        try:
            while True:
                au = await sub.get()
                info = hub.info
                if info is not None and info is not sent_info:
                    await self.uplink.send_text(_info_msg(stream.channel, info))
                    sent_info = info
                data = p.encode_media(stream.channel, au)
                await self.uplink.send_bytes(data)
                stream.frames += 1
                stream.bytes += len(data)
                stream.dropped = sub.dropped
        finally:
            sub.close()

    async def close_all(self) -> None:
        """The link went down: stop every stream and request of this connection."""
        tasks = list(self._tasks)
        self.streams.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "channel": s.channel,
                "camera": s.path,
                "profile": s.profile,
                "variant": s.variant,
                "frames": s.frames,
                "bytes": s.bytes,
                "dropped": s.dropped,
            }
            for s in self.streams.values()
        ]


def _info_msg(channel: int, info: StreamInfo) -> p.StreamInfoMsg:
    return p.StreamInfoMsg(
        type="stream_info",
        channel=channel,
        codec=str(info.codec)[:32],
        width=int(info.width or 0),
        height=int(info.height or 0),
        fps=float(info.fps or 0.0),
        profile=info.profile,
        has_b_frames=bool(info.has_b_frames),
        gop=info.gop,
        extradata=(info.extradata or b"").hex()[:8192],
        bitrate_bps=float(info.bitrate_bps or 0.0),
    )
