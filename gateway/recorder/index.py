"""Where segment files live and how the recorder talks to the SQLite index.

Layout: ``<recordings>/<camera>/<YYYY-MM-DD>/<HHMMSS>-<epoch-ms>.mp4`` in the gateway's
local time (the epoch-ms makes the name unambiguous whatever the zone). A camera id
that is a path (``town-a/village-3/cam-01``) becomes nested directories; every path
element is checked, so no id can climb out of the recordings directory.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from gateway.store import recordings as store
from gateway.store.db import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{6})-(\d{10,16})\.mp4$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadCameraId(ValueError):
    """A camera id that cannot name a directory."""


def camera_dir(root: Path, camera: str) -> Path:
    """The directory of one camera's recordings (safe for any id)."""
    parts = camera.split("/")
    if not camera or any(p in ("", ".", "..") for p in parts):
        raise BadCameraId(f"camera id {camera!r} is not a valid path")
    return root.joinpath(*(quote(p, safe="-_.@") for p in parts))


def segment_path(root: Path, camera: str, start: float) -> Path:
    local = time.localtime(start)
    name = f"{time.strftime('%H%M%S', local)}-{int(start * 1000)}.mp4"
    return camera_dir(root, camera) / time.strftime("%Y-%m-%d", local) / name


def parse_path(root: Path, path: Path) -> tuple[str, float] | None:
    """(camera, start) from a segment file's path, or None if it is not one of ours."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    parts = rel.parts
    if len(parts) < 3 or not _DATE.match(parts[-2]):
        return None
    match = _NAME.match(parts[-1])
    if not match:
        return None
    camera = "/".join(unquote(p) for p in parts[:-2])
    return camera, int(match.group(2)) / 1000.0


class RecordingIndex:
    """The recorder's view of the index: typed helpers over ``gateway.store.recordings``.

    Database errors (e.g. a full disk under the database) are the caller's to handle.
    """

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = root
        store.init(db)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def abs(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        # Index rows come from us, but a hand-edited database must not reach outside.
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"segment path {rel!r} leaves the recordings directory")
        return path

    def open_segment(
        self, camera: str, stream: str, path: Path, start: float, codec: str, kind: str
    ) -> int:
        return store.insert_segment(
            self.db,
            camera=camera,
            stream=stream,
            start=start,
            end=start,
            path=self.rel(path),
            codec=codec,
            kind=kind,
            has_event=int(kind == "event"),
            locked=int(store.is_locked_range(self.db, camera, start, start + 1)),
            status="open",
        )

    def progress(self, segment_id: int, start: float, duration: float, size: int) -> None:
        store.update_segment(
            self.db, segment_id, end=start + duration, duration=duration, bytes=size
        )

    def close_segment(
        self,
        segment_id: int,
        camera: str,
        start: float,
        duration: float,
        size: int,
        width: int,
        height: int,
        has_event: bool,
        status: str = "closed",
    ) -> None:
        end = start + duration
        locked = store.is_locked_range(self.db, camera, start, end)
        fields: dict[str, Any] = dict(
            start=start,
            end=end,
            duration=duration,
            bytes=size,
            width=width,
            height=height,
            status=status,
        )
        if has_event:
            fields["has_event"] = 1
        if locked:
            fields["locked"] = 1
        store.update_segment(self.db, segment_id, **fields)

    def gap(self, camera: str, start: float, end: float, reason: str) -> int | None:
        """Record an explicit gap; returns its id (None if it could not be stored)."""
        if end - start <= 0:
            return None
        try:
            gap_id = store.insert_gap(self.db, camera, start, end, reason)
        except sqlite3.Error as err:
            log.warning("camera %s: could not record gap: %s", camera, err)
            return None
        log.info("camera %s: gap of %.1f s recorded (%s)", camera, end - start, reason)
        return gap_id

    def mark_event(self, camera: str, start: float, end: float) -> None:
        """Flag the camera's segments overlapping [start, end] as event footage."""
        store.mark_event(self.db, camera, start, end)

    def end_gap(self, gap_id: int, end: float) -> None:
        store.update_gap_end(self.db, gap_id, end)

    def last_end(self, camera: str) -> float | None:
        return store.last_end(self.db, camera)

    def segments(self, camera: str, start: float, end: float) -> list[dict[str, Any]]:
        return store.segments(self.db, camera, start, end)

    def gaps(self, camera: str, start: float, end: float) -> list[dict[str, Any]]:
        return store.gaps(self.db, camera, start, end)

    def get(self, segment_id: int) -> dict[str, Any] | None:
        return store.get_segment(self.db, segment_id)

    def delete(self, segment: dict[str, Any]) -> int:
        """Remove a segment's file, then its row; returns the bytes freed.

        A file that cannot be removed (read-only or failing filesystem) keeps its row,
        marked ``deleting``: retention tries again later instead of forgetting a file
        that still takes space, and playback no longer offers it.
        """
        try:
            path = self.abs(segment["path"])
        except ValueError as err:  # a hand-edited row pointing outside: drop the row only
            log.warning("not deleting %s: %s", segment["path"], err)
            store.delete_segment(self.db, segment["id"])
            return 0
        freed = 0
        try:
            freed = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning(
                "could not delete segment %s (%s); retention will try again", segment["path"], err
            )
            store.update_segment(self.db, segment["id"], status="deleting")
            return 0
        store.delete_segment(self.db, segment["id"])
        _prune_empty_dirs(self.root, path.parent)
        return freed


def _prune_empty_dirs(root: Path, directory: Path) -> None:
    """Remove now-empty date and camera directories (never ``root`` itself)."""
    try:
        while directory != root and directory.is_relative_to(root):
            directory.rmdir()  # fails (and stops) when not empty
            directory = directory.parent
    except OSError:
        pass
