"""Crash recovery: find segments left open (kill -9, power cut) or never indexed.

A fragmented MP4 is ``ftyp``, ``moov``, then ``moof``+``mdat`` pairs. After a crash the
file may end inside a box; :func:`trim_to_fragments` cuts it back to the end of its last
whole fragment, :func:`probe` reads what is left (PyAV) and the segment is indexed with
its real duration. A file with no whole fragment holds no picture and is deleted.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import av

from gateway.recorder.index import RecordingIndex, parse_path
from gateway.store import recordings as store

log = logging.getLogger(__name__)


def trim_to_fragments(path: Path) -> tuple[int, int]:
    """Cut ``path`` after its last complete fragment. Returns (new size, fragments).

    Size 0 means nothing usable (no header or no whole fragment).
    """
    size = path.stat().st_size
    good = 0
    fragments = 0
    have_moov = False
    pending_moof = False
    with path.open("rb") as f:
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            head = f.read(16)
            box_size, box_type = struct.unpack(">I4s", head[:8])
            if box_size == 1 and len(head) >= 16:
                box_size = struct.unpack(">Q", head[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8 or offset + box_size > size:
                break  # torn box: the crash happened here
            offset += box_size
            if box_type == b"moov":
                have_moov = True
                good = offset
            elif box_type == b"moof":
                pending_moof = True
            elif box_type == b"mdat":
                if pending_moof and have_moov:
                    fragments += 1
                    good = offset
                pending_moof = False
            elif not pending_moof:
                good = offset
    if not have_moov or fragments == 0:
        return 0, 0
    if good < size:
        with path.open("r+b") as f:
            f.truncate(good)
            os.fsync(f.fileno())
    return good, fragments


@dataclass
class ProbeResult:
    """What a segment file holds."""

    codec: str
    width: int
    height: int
    frames: int
    keyframes: int
    duration: float  # seconds, first dts to last dts plus one frame
    decoded: int = 0


def probe(path: Path, decode: bool = False) -> ProbeResult:
    """Demux (and optionally decode) a segment; raises av.FFmpegError if unreadable."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        tb = stream.time_base
        first = last = None
        frames = keys = decoded = 0
        step = 0
        for packet in container.demux(stream):
            if packet.dts is None:
                continue
            frames += 1
            keys += int(packet.is_keyframe)
            if first is None:
                first = packet.dts
            if last is not None and packet.dts > last:
                step = packet.dts - last
            last = packet.dts
            if decode:
                decoded += len(cc.decode(packet))
        if decode:
            decoded += len(cc.decode(None))
        duration = (
            float((last - first + (step or 0)) * tb)
            if first is not None and last is not None and tb is not None
            else 0.0
        )
        return ProbeResult(
            stream.codec_context.name, cc.width, cc.height, frames, keys, duration, decoded
        )


def _repair(path: Path) -> tuple[int, ProbeResult | None]:
    """Trim and probe one file; (size, probe) or (0, None) when unusable."""
    try:
        size, _ = trim_to_fragments(path)
        if size == 0:
            return 0, None
        result = probe(path)
    except (OSError, av.FFmpegError, struct.error) as err:
        log.warning("segment %s is unreadable: %s", path, err)
        return 0, None
    if result.frames == 0:
        return 0, None
    return size, result


def recover(index: RecordingIndex) -> dict[str, int]:
    """Repair and index what a crash left behind. Returns counts for the log and tests."""
    counts = {"reopened": 0, "adopted": 0, "deleted": 0, "missing": 0}
    for seg in store.segments_by_status(index.db, "open"):
        path = index.root / seg["path"]
        if not path.exists():
            store.delete_segment(index.db, seg["id"])
            counts["missing"] += 1
            continue
        size, result = _repair(path)
        if result is None:
            index.delete(seg)
            counts["deleted"] += 1
            continue
        index.close_segment(
            seg["id"],
            seg["camera"],
            seg["start"],
            result.duration,
            size,
            result.width,
            result.height,
            has_event=bool(seg["has_event"]),
            status="recovered",
        )
        counts["reopened"] += 1
        log.info(
            "camera %s: recovered open segment %s (%.1f s)",
            seg["camera"],
            seg["path"],
            result.duration,
        )
    if index.root.is_dir():
        known = store.all_paths(index.db)
        for path in sorted(index.root.rglob("*.mp4")):
            if index.rel(path) in known:
                continue
            parsed = parse_path(index.root, path)
            if parsed is None:
                continue
            camera, start = parsed
            size, result = _repair(path)
            if result is None:
                path.unlink(missing_ok=True)
                counts["deleted"] += 1
                continue
            store.insert_segment(
                index.db,
                camera=camera,
                start=start,
                end=start + result.duration,
                duration=result.duration,
                bytes=size,
                path=index.rel(path),
                codec=result.codec,
                width=result.width,
                height=result.height,
                status="recovered",
                locked=int(store.is_locked_range(index.db, camera, start, start + result.duration)),
            )
            counts["adopted"] += 1
            log.info("camera %s: indexed stray segment %s", camera, index.rel(path))
    return counts
