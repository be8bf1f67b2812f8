"""Camera operations by path, local or through the tree: snapshot, PTZ, recordings, clips.

A path without ``/`` is a camera of this gateway and is served by its own parts
(streams, registry, recorder); a path ``child/…`` is forwarded to that child, which
applies the same rule. The HTTP API and the uplink (answering its parent) both use
these functions, so a request walks down the tree one hop at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway.cascade.downlink import Downlink
from gateway.cascade.local import Local
from gateway.cascade.session import ChildGone, RemoteError
from gateway.recorder.service import Recorder

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
T = TypeVar("T")


class AccessError(Exception):
    """A camera operation that cannot be done, with an HTTP-like status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _remote(here: Local, path: str) -> Downlink | None:
    """The downlink if ``path`` lies below a child, else None (a local camera)."""
    if "/" not in path:
        return None
    down = here.cascade.downlink if here.cascade is not None else None
    if down is None or not down.owns(path):
        raise AccessError(404, f"no child gateway owns {path!r} / 未知设备")
    return down


def _local_camera(here: Local, path: str) -> None:
    """Raise 404 unless ``path`` is a camera of this gateway."""
    registry = here.registry
    if registry is None:
        # No registry: the config's static cameras are all this gateway knows.
        known = any(c.id == path and c.enabled for c in here.settings.cameras)
    else:
        known = registry.get(path) is not None
    if not known:
        raise AccessError(404, f"unknown camera {path!r} / 未知摄像机")


async def _call_remote(coro: Awaitable[T]) -> T:
    try:
        return await coro
    except ChildGone as err:
        raise AccessError(503, f"child gateway {err} is offline / 下级平台离线") from None
    except RemoteError as err:
        raise AccessError(err.status, str(err)) from None
    except KeyError as err:
        raise AccessError(404, f"unknown camera {err} / 未知摄像机") from None


async def snapshot(here: Local, path: str) -> bytes:
    """A JPEG of the camera now."""
    down = _remote(here, path)
    if down is not None:
        body, _ = await _call_remote(down.fetch(path, "snapshot"))
        return body
    _local_camera(here, path)
    streams = here.streams
    if streams is None:
        raise AccessError(503, "the streams part is not running on this gateway")
    try:
        return await streams.snapshot(path)
    except KeyError:
        raise AccessError(404, f"unknown camera {path!r}") from None
    except Exception as err:
        log.warning("snapshot of %s failed: %s", path, err)
        raise AccessError(502, f"snapshot of {path} failed: {err}") from None


async def inspection_snapshot(here: Local, path: str) -> bytes:
    """The fresh snapshot the latest on-demand inspection took of the camera."""
    down = _remote(here, path)
    if down is not None:
        body, _ = await _call_remote(down.fetch(path, "inspection_snapshot"))
        return body
    reports = here.reports
    jpeg = await asyncio.to_thread(reports.snapshot, path) if reports is not None else None
    if jpeg is None:
        raise AccessError(404, f"no inspection snapshot of {path!r} / 无巡检快照")
    return jpeg


async def ptz(here: Local, path: str, command: dict[str, Any]) -> dict[str, Any]:
    """Move (or stop, or go to a preset) a PTZ camera."""
    down = _remote(here, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "ptz", command))
        return resp.data
    _local_camera(here, path)
    registry = here.registry
    if registry is None:
        raise AccessError(501, "PTZ is not available on this gateway")
    try:
        result = await registry.ptz(path, **command)
    except (TypeError, ValueError) as err:
        raise AccessError(400, f"bad PTZ command for {path}: {err}") from None
    except Exception as err:
        raise AccessError(502, f"PTZ on {path} failed: {err}") from None
    return result if isinstance(result, dict) else {"ok": True}


async def presets(here: Local, path: str) -> list[dict[str, Any]]:
    """The PTZ presets of a camera."""
    down = _remote(here, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "presets", {}))
        return list(resp.data.get("presets", []))
    _local_camera(here, path)
    registry = here.registry
    if registry is None:
        raise AccessError(501, "PTZ is not available on this gateway")
    try:
        return list(await registry.presets(path))
    except ValueError as err:
        raise AccessError(400, f"{path}: {err}") from None
    except Exception as err:
        raise AccessError(502, f"presets of {path} failed: {err}") from None


def _recorder(here: Local) -> Recorder:
    rec = here.recorder
    if rec is None:
        raise AccessError(503, "the recorder is not running on this gateway / 未启用录像")
    return rec


async def recordings(here: Local, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded spans of a camera (``start``/``end`` ISO times optional)."""
    down = _remote(here, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "recordings", params))
        return list(resp.data.get("recordings", []))
    _local_camera(here, path)
    rec = _recorder(here)
    start, end = _times(params)
    return [_plain(i) for i in rec.recordings(path, start=start, end=end)]


async def clip(here: Local, path: str, params: dict[str, Any]) -> AsyncIterator[bytes]:
    """An MP4 of the camera between ``start`` and ``end``, in chunks."""
    down = _remote(here, path)
    if down is not None:
        try:
            session, rest = down.route(path)
        except (KeyError, ChildGone) as err:
            await _call_remote(_raise(err))
        ch = session.open_channel()
        task = asyncio.create_task(down.request_on(session, "clip", rest, params, ch, 600))
        try:
            # Chunks stream through as they come; the response (after them) ends the body.
            while (chunk := await ch.get()) is not None:
                yield chunk
            if ch.overflowed:  # never end a cut-short body as if it were whole
                raise AccessError(503, f"clip of {path}: {ch.ended.result()}")
            await _call_remote(task)
        finally:
            task.cancel()
            session.channels.pop(ch.number, None)
        return
    _local_camera(here, path)
    rec = _recorder(here)
    start, end = _times(params)
    if start is None or end is None or end <= start:
        raise AccessError(400, "a clip needs start < end (ISO 8601 times)")
    # codec=h264: H.265 footage transcoded for a browser without H.265.
    codec = "h264" if params.get("codec") == "h264" else None
    try:
        result = await rec.clip(path, start, end, codec=codec)
    except LookupError as err:
        raise AccessError(404, f"no recording of {path} in that span: {err}") from None
    except ValueError as err:
        raise AccessError(400, f"clip of {path}: {err}") from None
    except RuntimeError as err:  # ClipRefused: a bound of the clip cache or of the disk
        raise AccessError(503, f"clip of {path}: {err}") from None
    async for chunk in _file_chunks(result):
        yield chunk


async def record(here: Local, path: str, seconds: float, reason: str) -> dict[str, Any]:
    """Record a camera for ``seconds`` where it is (the owning gateway records it)."""
    down = _remote(here, path)
    if down is not None:
        resp = await _call_remote(
            down.request(path, "record", {"seconds": seconds, "reason": reason})
        )
        return resp.data
    _local_camera(here, path)
    _recorder(here).record_for(path, seconds, reason)
    return {"recording": path, "seconds": seconds}


# Locks a parent may set or release below: its exports' only, never a child's own event locks.
LOCK_OWNER_PREFIX = "export:"


async def lock(here: Local, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """Protect a camera's span from retention (``locked``) or release an owner's locks.

    ``owner`` names the locks (``export:…``); releasing drops every lock of that owner on
    the gateway that records ``path``. The gateway that records the camera keeps the lock.
    """
    from gateway.store import recordings as rec_store

    owner = str(params.get("owner", ""))[:160]
    if not owner.startswith(LOCK_OWNER_PREFIX) or len(owner) <= len(LOCK_OWNER_PREFIX):
        raise AccessError(400, f"lock owner must start with {LOCK_OWNER_PREFIX!r}")
    down = _remote(here, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "lock", params))
        return resp.data
    _local_camera(here, path)
    rec = _recorder(here)
    locked = bool(params.get("locked", True))
    if locked:
        start, end = _times(params)
        if start is None or end is None or end <= start:
            raise AccessError(400, "a lock needs start < end (ISO 8601 times)")
        await asyncio.to_thread(
            rec_store.add_lock, rec.index.db, path, start.timestamp(), end.timestamp(), owner
        )
        return {"camera": path, "owner": owner, "locked": True}
    released = await asyncio.to_thread(rec_store.remove_event_locks, rec.index.db, owner)
    return {"camera": path, "owner": owner, "locked": False, "segments": len(released)}


async def _raise(err: BaseException) -> None:
    raise err


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file's bytes in chunks."""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def _times(params: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    def one(key: str) -> datetime | None:
        value = params.get(key)
        if value in (None, ""):
            return None
        try:
            ts = datetime.fromisoformat(str(value).strip().replace(" ", "+"))
        except ValueError:
            raise AccessError(400, f"{key} must be an ISO 8601 time / 时间格式错误") from None
        # Naive times are UTC, as in the recordings API.
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)

    return one("start"), one("end")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A recorder row with its times as ISO strings (as the parent gets them)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
