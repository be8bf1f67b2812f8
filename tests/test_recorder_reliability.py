"""The recorder when SQLite or the filesystem fails: nothing half-open, nothing invisible.

Real hubs fed with real H.264, a real SQLite database made to fail with a trigger (as a
full or broken database fails: the statement raises), a real read-only mount.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.config import parse_settings
from gateway.recorder.index import RecordingIndex, segment_path
from gateway.recorder.retention import Retention
from gateway.store import recordings as store
from gateway.store.db import Database
from gateway.streams.hub import Hub
from tests.recorder_media import HubFeeder
from tests.test_recorder_service import make_gateway, make_recorder, wait_for

FAIL_GAPS = (
    "CREATE TRIGGER fail_gaps BEFORE INSERT ON rec_gaps"
    " BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
)


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")}


async def test_a_gap_the_database_refuses_is_stored_later_and_leaves_nothing_open(
    tmp_path: Path,
) -> None:
    gw = make_gateway(
        tmp_path, [{"id": "cam-01", "recording": {"mode": "continuous", "segment_s": 2}}]
    )
    hub = Hub("cam-01/main")
    gw.streams.hubs[("cam-01", "main")] = hub
    feeder = HubFeeder(hub).start()
    rec = make_recorder(gw)
    await rec.start()
    try:
        closed = lambda: [  # noqa: E731
            s for s in rec.index.segments("cam-01", 0, time.time() + 10) if s["status"] == "closed"
        ]
        await wait_for(lambda: len(closed()) >= 1, 30)
        gw.db.execute(FAIL_GAPS)
        feeder.pause(2.5)  # the camera drops out: the next segment starts after a hole
        paused_at = time.time()
        worker = rec.workers["cam-01"]
        await wait_for(lambda: worker._seg is not None and worker._seg.start > paused_at + 2, 30)
        assert rec.index.gaps("cam-01", 0, time.time() + 10) == []  # the insert failed
        assert worker.state == "recording"  # ... and recording went on
        gw.db.execute("DROP TRIGGER fail_gaps")
        # The hole is indexed once the database takes it (at the latest when the
        # segment closes), with its true extent.
        await wait_for(lambda: rec.index.gaps("cam-01", 0, time.time() + 10), 30)
    finally:
        await rec.stop()
        feeder.stop()
    gaps = rec.index.gaps("cam-01", 0, time.time() + 10)
    assert len(gaps) == 1, gaps
    assert 2.0 < gaps[0]["end"] - gaps[0]["start"] < 4.0, gaps
    segs = rec.index.segments("cam-01", 0, time.time() + 10)
    assert all(s["status"] == "closed" for s in segs), segs
    assert {s["path"] for s in segs} == files(rec.root)  # no file without its row


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` on a read-only bind mount: even root cannot unlink in it."""
    for args in (
        ["--bind", str(directory), str(directory)],
        ["-o", "remount,ro,bind", str(directory)],
    ):
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        assert done.returncode == 0, f"mount {args}: {done.stderr} (run the tests as root)"
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_segment_whose_file_cannot_be_removed_stays_with_retention_until_it_goes(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "gateway.db")
    index = RecordingIndex(db, tmp_path / "recordings")
    old = time.time() - 30 * 86400
    paths = []
    for i in range(3):
        path = segment_path(index.root, "cam-01", old + 10 * i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 100_000)
        paths.append(path)
        store.insert_segment(
            db, camera="cam-01", start=old + 10 * i, end=old + 10 * i + 10, duration=10,
            bytes=100_000, path=index.rel(path), status="closed",
        )  # fmt: skip
    settings = parse_settings({"retention": {"continuous_days": 7}}).retention
    retention = Retention(index, settings)
    with read_only(paths[0].parent):
        assert retention.expire() == 3
        # The files are still there, so are their rows: retention has not forgotten them.
        assert all(p.exists() for p in paths)
        assert [s["path"] for s in store.deleting(db)] == [index.rel(p) for p in paths]
        assert index.segments("cam-01", 0, time.time()) == []  # no longer offered to play
        retention.run_once()  # tries again, fails again, does not spin
        assert len(store.deleting(db)) == 3
    retention.run_once()  # the filesystem is writable again
    assert not any(p.exists() for p in paths)
    assert store.deleting(db) == [] and store.usage(db)["n"] == 0
    assert retention.evicted_bytes == 300_000
