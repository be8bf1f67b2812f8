"""Camera operations by path, local or through the tree: snapshot, PTZ, recordings, clips.

A path without ``/`` is a camera of this gateway and is served by its own parts
(streams, registry, recorder); a path ``child/…`` is forwarded to that child, which
applies the same rule. The HTTP API and the uplink (answering its parent) both use
these functions, so a request walks down the tree one hop at a time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from gateway.cascade.session import ChildGone, RemoteError

log = logging.getLogger(__name__)
CHUNK = 256 * 1024


class AccessError(Exception):
    """A camera operation that cannot be done, with an HTTP-like status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _downlink(gw: Any) -> Any:
    cascade = gw.part("cascade")
    return cascade.downlink if cascade is not None else None


def _remote(gw: Any, path: str) -> Any:
    """The downlink if ``path`` lies below a child, else None (a local camera)."""
    if "/" not in path:
        return None
    down = _downlink(gw)
    if down is None or not down.owns(path):
        raise AccessError(404, f"no child gateway owns {path!r} / 未知设备")
    return down


def _local_camera(gw: Any, path: str) -> Any:
    registry = gw.part("registry")
    if registry is None:
        # No registry: the config's static cameras are all this gateway knows.
        cam = next((c for c in gw.settings.cameras if c.id == path and c.enabled), None)
        if cam is None:
            raise AccessError(404, f"unknown camera {path!r} / 未知摄像机")
        return cam
    cam = registry.get(path)
    if cam is None:
        raise AccessError(404, f"unknown camera {path!r} / 未知摄像机")
    return cam


async def _call_remote(coro: Any) -> Any:
    try:
        return await coro
    except ChildGone as err:
        raise AccessError(503, f"child gateway {err} is offline / 下级平台离线") from None
    except RemoteError as err:
        raise AccessError(err.status, str(err)) from None
    except KeyError as err:
        raise AccessError(404, f"unknown camera {err} / 未知摄像机") from None


async def snapshot(gw: Any, path: str) -> bytes:
    """A JPEG of the camera now."""
    down = _remote(gw, path)
    if down is not None:
        body, _ = await _call_remote(down.fetch(path, "snapshot"))
        return body
    _local_camera(gw, path)
    streams = gw.part("streams")
    if streams is None:
        raise AccessError(503, "the streams part is not running on this gateway")
    try:
        return await _maybe(streams.snapshot(path))
    except KeyError:
        raise AccessError(404, f"unknown camera {path!r}") from None
    except Exception as err:
        log.warning("snapshot of %s failed: %s", path, err)
        raise AccessError(502, f"snapshot of {path} failed: {err}") from None


async def inspection_snapshot(gw: Any, path: str) -> bytes:
    """The fresh snapshot the latest on-demand inspection took of the camera."""
    down = _remote(gw, path)
    if down is not None:
        body, _ = await _call_remote(down.fetch(path, "inspection_snapshot"))
        return body
    reports = gw.part("reports")
    body = await asyncio.to_thread(reports.snapshot, path) if reports is not None else None
    if body is None:
        raise AccessError(404, f"no inspection snapshot of {path!r} / 无巡检快照")
    return body


async def ptz(gw: Any, path: str, command: dict[str, Any]) -> dict[str, Any]:
    """Move (or stop, or go to a preset) a PTZ camera."""
    down = _remote(gw, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "ptz", command))
        return resp.data
    _local_camera(gw, path)
    registry = gw.part("registry")
    fn = getattr(registry, "ptz", None)
    if fn is None:
        raise AccessError(501, "PTZ is not available on this gateway")
    try:
        result = await _maybe(fn(path, **command))
    except (TypeError, ValueError) as err:
        raise AccessError(400, f"bad PTZ command for {path}: {err}") from None
    except Exception as err:
        raise AccessError(502, f"PTZ on {path} failed: {err}") from None
    return result if isinstance(result, dict) else {"ok": True}


async def presets(gw: Any, path: str) -> list[dict[str, Any]]:
    """The PTZ presets of a camera."""
    down = _remote(gw, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "presets", {}))
        return list(resp.data.get("presets", []))
    _local_camera(gw, path)
    fn = getattr(gw.part("registry"), "presets", None)
    if fn is None:
        raise AccessError(501, "PTZ is not available on this gateway")
    try:
        return list(await _maybe(fn(path)))
    except ValueError as err:
        raise AccessError(400, f"{path}: {err}") from None
    except Exception as err:
        raise AccessError(502, f"presets of {path} failed: {err}") from None


def _recorder(gw: Any) -> Any:
    rec = gw.part("recorder")
    if rec is None:
        raise AccessError(503, "the recorder is not running on this gateway / 未启用录像")
    return rec


async def recordings(gw: Any, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The recorded spans of a camera (``start``/``end`` ISO times optional)."""
    down = _remote(gw, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "recordings", params))
        return list(resp.data.get("recordings", []))
    _local_camera(gw, path)
    rec = _recorder(gw)
    fn = getattr(rec, "recordings", None) or getattr(rec, "list", None)
    if fn is None:
        raise AccessError(501, "this gateway's recorder cannot list recordings")
    start, end = _times(params)
    try:
        items = await _maybe(fn(path, start=start, end=end))
    except TypeError:
        items = await _maybe(fn(path))
    return [_plain(i) for i in items]


async def clip(gw: Any, path: str, params: dict[str, Any]) -> AsyncIterator[bytes]:
    """An MP4 of the camera between ``start`` and ``end``, in chunks."""
    down = _remote(gw, path)
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
    _local_camera(gw, path)
    rec = _recorder(gw)
    fn = getattr(rec, "clip", None)
    if fn is None:
        raise AccessError(501, "this gateway's recorder cannot cut clips")
    start, end = _times(params)
    if start is None or end is None or end <= start:
        raise AccessError(400, "a clip needs start < end (ISO 8601 times)")
    # codec=h264: H.265 footage transcoded for a browser without H.265 (only asked for
    # then, so a recorder that predates it still serves plain clips).
    extra = {"codec": "h264"} if params.get("codec") == "h264" else {}
    try:
        result = await _maybe(fn(path, start, end, **extra))
    except LookupError as err:
        raise AccessError(404, f"no recording of {path} in that span: {err}") from None
    except ValueError as err:
        raise AccessError(400, f"clip of {path}: {err}") from None
    except RuntimeError as err:  # ClipRefused: a bound of the clip cache or of the disk
        raise AccessError(503, f"clip of {path}: {err}") from None
    async for chunk in _chunks(result):
        yield chunk


async def record(gw: Any, path: str, seconds: float, reason: str) -> dict[str, Any]:
    """Record a camera for ``seconds`` where it is (the owning gateway records it)."""
    down = _remote(gw, path)
    if down is not None:
        resp = await _call_remote(
            down.request(path, "record", {"seconds": seconds, "reason": reason})
        )
        return resp.data
    _local_camera(gw, path)
    rec = _recorder(gw)
    await _maybe(rec.record_for(path, seconds, reason))
    return {"recording": path, "seconds": seconds}


# Locks a parent may set or release below: its exports' only, never a child's own event locks.
LOCK_OWNER_PREFIX = "export:"


async def lock(gw: Any, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """Protect a camera's span from retention (``locked``) or release an owner's locks.

    ``owner`` names the locks (``export:…``); releasing drops every lock of that owner on
    the gateway that records ``path``. The gateway that records the camera keeps the lock.
    """
    from gateway.store import recordings as rec_store

    owner = str(params.get("owner", ""))[:160]
    if not owner.startswith(LOCK_OWNER_PREFIX) or len(owner) <= len(LOCK_OWNER_PREFIX):
        raise AccessError(400, f"lock owner must start with {LOCK_OWNER_PREFIX!r}")
    down = _remote(gw, path)
    if down is not None:
        resp = await _call_remote(down.request(path, "lock", params))
        return resp.data
    _local_camera(gw, path)
    rec = _recorder(gw)
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


async def _chunks(result: Any) -> AsyncIterator[bytes]:
    """Bytes, a file path, or an (async) iterator of bytes, as chunks."""
    if isinstance(result, bytes | bytearray):
        for i in range(0, len(result), CHUNK):
            yield bytes(result[i : i + CHUNK])
    elif isinstance(result, str) or hasattr(result, "open"):
        with open(result, "rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk
    elif hasattr(result, "__aiter__"):
        async for chunk in result:
            yield chunk
    else:
        for chunk in result:
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


def _plain(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        data = item
    elif hasattr(item, "model_dump"):
        data = item.model_dump(mode="json")
    elif hasattr(item, "__dataclass_fields__"):
        data = {k: getattr(item, k) for k in item.__dataclass_fields__}
    else:
        data = {"value": str(item)}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
