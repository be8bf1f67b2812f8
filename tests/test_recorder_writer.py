"""Segment writer, crash recovery and retention on real H.264/H.265 access units."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import av
import pytest

from gateway.config import RetentionSettings
from gateway.recorder.index import RecordingIndex, parse_path, segment_path
from gateway.recorder.recovery import probe, recover, trim_to_fragments
from gateway.recorder.retention import Retention
from gateway.recorder.writer import SegmentWriter
from gateway.store import recordings as store
from gateway.store.db import Database
from tests.recorder_media import encode_aus


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_segment_is_fragmented_mp4_that_decodes_every_frame(tmp_path: Path, codec: str) -> None:
    aus = encode_aus(100, codec=codec, gop=25)
    path = tmp_path / "seg.mp4"
    writer = SegmentWriter(path, aus[0], codec)
    for au in aus:
        writer.write(au)
    result = writer.close()
    assert result.frames == 100
    assert result.duration == pytest.approx(4.0, abs=0.001)
    assert (result.width, result.height) == (320, 240)
    info = probe(path, decode=True)
    assert info.frames == 100 and info.decoded == 100 and info.keyframes == 4
    assert info.duration == pytest.approx(4.0, abs=0.001)
    head = path.read_bytes()[:2000]
    assert b"moof" in path.read_bytes() and b"mvex" in head  # fragmented
    assert (b"hvc1" if codec == "hevc" else b"avc1") in head


def test_timestamps_rebased_and_dts_kept_increasing(tmp_path: Path) -> None:
    aus = encode_aus(50, pts0=10**9)
    # A repeated and a backwards timestamp: the muxer would refuse both.
    aus[10] = type(aus[10])(aus[10].data, aus[9].pts, aus[9].dts, aus[10].time_base, False, 0.0)
    aus[20] = type(aus[20])(aus[20].data, aus[5].pts, aus[5].dts, aus[20].time_base, False, 0.0)
    path = tmp_path / "seg.mp4"
    writer = SegmentWriter(path, aus[0], "h264")
    for au in aus:
        writer.write(au)
    writer.close()
    with av.open(str(path)) as c:
        dts = [p.dts for p in c.demux(video=0) if p.dts is not None]
    assert dts[0] == 0
    assert all(b > a for a, b in itertools.pairwise(dts))
    assert probe(path, decode=True).decoded == 50


def test_torn_file_is_trimmed_to_its_last_whole_fragment(tmp_path: Path) -> None:
    aus = encode_aus(100, gop=25)
    path = tmp_path / "seg.mp4"
    writer = SegmentWriter(path, aus[0], "h264")
    for au in aus:
        writer.write(au)
    writer.close()
    data = path.read_bytes()
    moofs = [i for i in range(len(data)) if data[i + 4 : i + 8] == b"moof"]
    assert len(moofs) == 4
    # Cut in the middle of the third fragment's mdat, as kill -9 would.
    path.write_bytes(data[: moofs[3] - 100])
    size, fragments = trim_to_fragments(path)
    assert fragments == 2 and size == moofs[2]
    info = probe(path, decode=True)
    assert info.frames == 50 and info.decoded == 50
    assert info.duration == pytest.approx(2.0, abs=0.001)


def _db(tmp_path: Path) -> tuple[Database, RecordingIndex]:
    db = Database(tmp_path / "gw.db")
    root = tmp_path / "recordings"
    root.mkdir()
    return db, RecordingIndex(db, root)


def test_recovery_indexes_open_and_stray_segments_and_deletes_empty(tmp_path: Path) -> None:
    _, index = _db(tmp_path)
    t0 = time.time() - 100
    aus = encode_aus(75, gop=25, start_wall=t0)
    # 1: an open segment (the gateway was killed while writing it), torn mid-fragment.
    p1 = segment_path(index.root, "cam-01", t0)
    w = SegmentWriter(p1, aus[0], "h264")
    for au in aus:
        w.write(au)
    w.close()
    data = p1.read_bytes()
    p1.write_bytes(data[:-300])
    sid = index.open_segment("cam-01", "main", p1, t0, "h264", "continuous")
    # 2: a file on disk the index never heard of.
    p2 = segment_path(index.root, "town/cam-02", t0 + 10)
    w = SegmentWriter(p2, aus[0], "h264")
    for au in aus[:50]:
        w.write(au)
    w.close()
    # 3: a zero-length file and 4: a header without any fragment.
    p3 = segment_path(index.root, "cam-01", t0 + 20)
    p3.write_bytes(b"")
    p4 = segment_path(index.root, "cam-01", t0 + 30)
    w = SegmentWriter(p4, aus[0], "h264")
    w.write(aus[0])
    w._container = None  # simulate a crash before the first fragment was flushed
    assert parse_path(index.root, p2) == ("town/cam-02", pytest.approx(t0 + 10, abs=0.001))

    counts = recover(index)
    assert counts == {"reopened": 1, "adopted": 1, "deleted": 2, "missing": 0}
    seg = index.get(sid)
    assert seg["status"] == "recovered"
    assert seg["duration"] == pytest.approx(2.0, abs=0.01)  # 3 GOPs written, the last one torn
    assert probe(p1, decode=True).decoded == 50
    stray = index.segments("town/cam-02", t0, t0 + 100)
    assert len(stray) == 1 and stray[0]["duration"] == pytest.approx(2.0, abs=0.01)
    assert not p3.exists() and not p4.exists()
    assert recover(index) == {"reopened": 0, "adopted": 0, "deleted": 0, "missing": 0}


def test_retention_evicts_oldest_unlocked_first_and_by_age(tmp_path: Path) -> None:
    db, index = _db(tmp_path)
    now = time.time()
    ids = []
    for i in range(6):
        path = index.root / "cam" / "2026-01-01" / f"00000{i}-{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        sid = store.insert_segment(
            db,
            camera="cam",
            start=now - 1000 + i * 10,
            end=now - 990 + i * 10,
            bytes=1000,
            path=index.rel(path),
            status="closed",
            has_event=int(i == 1),
        )
        ids.append(sid)
    store.set_locked(db, [ids[0]], True)
    ret = Retention(index, RetentionSettings(max_usage_percent=100, min_free_mb=0))
    ret.over_limit = lambda extra=0: len(store.evictable(db)) > 3  # type: ignore[method-assign]
    assert ret.make_room() == 2
    left = [s["id"] for s in index.segments("cam", 0, now)]
    assert left == [ids[0], ids[3], ids[4], ids[5]]  # locked kept, the two oldest others gone
    assert not (index.root / "cam" / "2026-01-01" / "000001-1.mp4").exists()
    # Age: continuous footage past its days goes, locked stays.
    ret2 = Retention(index, RetentionSettings(continuous_days=0, event_days=1))
    assert ret2.expire(now) == 3
    assert [s["id"] for s in index.segments("cam", 0, now)] == [ids[0]]
    assert os.listdir(index.root / "cam" / "2026-01-01") == ["000000-0.mp4"]


def test_a_new_resolution_gets_its_own_header_while_repeats_reuse_the_template(
    tmp_path: Path,
) -> None:
    from gateway.media.nal import parameter_set_units
    from gateway.recorder.writer import TEMPLATES

    def parameter_set_bytes(data: bytes, codec: str) -> bytes:
        return b"|".join(parameter_set_units(codec, data))

    small = encode_aus(25, size=(320, 240))
    large = encode_aus(25, size=(640, 480))
    assert parameter_set_bytes(small[0].data, "h264") != parameter_set_bytes(large[0].data, "h264")
    assert parameter_set_bytes(small[0].data, "h264") == parameter_set_bytes(
        encode_aus(25, size=(320, 240))[0].data, "h264"
    )
    for i, aus in enumerate([small, large, small]):
        path = tmp_path / f"{i}.mp4"
        w = SegmentWriter(path, aus[0], "h264")
        for au in aus:
            w.write(au)
        w.close()
        info = probe(path, decode=True)
        assert (info.width, info.height) == ((320, 240) if aus is small else (640, 480))
        assert info.decoded == 25
    assert len(TEMPLATES._items) >= 2
