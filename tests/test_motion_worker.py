"""The motion worker on a hub fed with real H.264: decode, pace, detect, publish events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import av
import cv2
import numpy as np

from gateway.config import MotionSettings
from gateway.events.model import Event
from gateway.media.access_unit import AccessUnit, StreamInfo
from gateway.motion.clips import Clip, Mover
from gateway.motion.worker import MotionWorker
from gateway.streams.hub import Hub

FPS = 25
SETTINGS = MotionSettings(fps=5, start_after_s=0.3, end_after_s=1.0, cooldown_s=0.5)


def h264_units(clip: Clip, t0: float, epoch: int = 0, bframes: int = 0) -> Iterator[AccessUnit]:
    """Encode a clip's frames as a camera would (Annex B, SPS/PPS on every keyframe)."""
    w, h = clip.size
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, FPS), Fraction(FPS, 1)
    enc.gop_size, enc.max_b_frames, enc.bit_rate = 25, bframes, 400_000
    enc.options = {"preset": "veryfast", "x264-params": "repeat-headers=1"}
    if not bframes:
        enc.options = {**enc.options, "tune": "zerolatency"}
    chroma = np.full((h // 2, w // 2, 2), 128, np.uint8)
    for i, (_, y) in enumerate(clip.frames()):
        yuv = np.concatenate([y, chroma.reshape(h // 2, w)]).reshape(h * 3 // 2, w)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = i
        for pkt in enc.encode(frame):
            yield AccessUnit(
                bytes(pkt), pkt.pts, pkt.dts, Fraction(1, FPS), pkt.is_keyframe, t0 + i / FPS, epoch
            )


def run(hub: Hub, units: Iterator[AccessUnit], worker: MotionWorker) -> None:
    for au in units:
        while hub.subscribers and hub.subscribers[0].qsize > 30:  # keep it lossless
            time.sleep(0.002)
        hub.publish(au)
    deadline = time.monotonic() + 20
    while hub.subscribers and hub.subscribers[0].qsize and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)


def make(settings: MotionSettings = SETTINGS) -> tuple[Hub, MotionWorker, list]:
    hub = Hub("cam-01/sub")
    hub.set_info(StreamInfo("h264", 640, 360, FPS))
    got: list[tuple[Event, bytes | None]] = []
    lock = threading.Lock()

    def sink(event: Event, jpeg: bytes | None) -> None:
        with lock:
            got.append((event.model_copy(deep=True), jpeg))

    worker = MotionWorker("cam-01", settings, hub, sink, source="site")
    worker.start()
    return hub, worker, got


def test_worker_publishes_start_and_end_of_a_motion_event() -> None:
    mover = Mover(t0=3.0, t1=6.0, y=0.5, w=0.08, h=0.25, contrast=40)
    clip = Clip("worker", 10.0, [mover], fps=FPS, noise=3.0)
    hub, worker, got = make()
    t0 = 1_800_000_000.0
    try:
        run(hub, h264_units(clip, t0), worker)
    finally:
        worker.stop()
    frames = int(clip.duration * FPS)
    assert worker.decoded == frames
    assert abs(worker.analysed - clip.duration * SETTINGS.fps) <= 2, worker.stats()
    assert worker.decode_errors == 0
    assert [e.end is None for e, _ in got] == [True, False], got
    start, end = got[0][0], got[1][0]
    assert start.id == end.id and start.type == "motion" and start.camera == "cam-01"
    assert abs(start.start.timestamp() - (t0 + mover.t0)) <= 0.5
    assert abs(end.end.timestamp() - (t0 + mover.t1)) <= 1.0
    assert end.score and end.score > 0.005 and end.boxes
    assert end.snapshot_url == f"/api/v1/events/{end.id}/snapshot.jpg"
    for _, jpeg in got:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (360, 640, 3)
    stats = worker.stats()
    assert stats["events"] == 1 and not stats["running"] and stats["cpu_percent"] >= 0


def test_worker_survives_reconnects_and_garbage_without_false_events() -> None:
    clip = Clip("quiet", 4.0, [], fps=FPS, noise=3.0)
    hub, worker, got = make()
    t0 = 1_800_000_000.0
    try:
        run(hub, h264_units(clip, t0, epoch=1), worker)
        garbage = AccessUnit(
            b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 4,
            0,
            0,
            Fraction(1, FPS),
            True,
            t0 + 4.0,
            2,
        )
        run(hub, iter([garbage]), worker)
        run(hub, h264_units(clip, t0 + 5.0, epoch=3), worker)
        assert worker.running
    finally:
        worker.stop()
    assert got == []
    assert worker.decoded >= 2 * clip.duration * FPS - 2
    assert worker.last_error == ""


def test_analysis_rate_follows_settings_not_stream_rate() -> None:
    clip = Clip("quiet", 4.0, [], fps=FPS, noise=2.0)
    hub, worker, _ = make(SETTINGS.model_copy(update={"fps": 2.0}))
    try:
        run(hub, h264_units(clip, 0.0), worker)
    finally:
        worker.stop()
    assert abs(worker.analysed - 8) <= 1, worker.stats()


def test_b_frame_streams_are_paced_and_skip_non_reference_frames() -> None:
    mover = Mover(t0=2.0, t1=5.0, y=0.5, w=0.08, h=0.25, contrast=40)
    clip = Clip("bframes", 8.0, [mover], fps=FPS, noise=3.0)
    hub, worker, got = make()
    try:
        run(hub, h264_units(clip, 1_800_000_000.0, bframes=2), worker)
    finally:
        worker.stop()
    frames = int(clip.duration * FPS)
    # Non-reference B-frames are skipped by the decoder; what is left still carries
    # the analysis rate, and the event is found as before.
    assert worker.decoded < frames * 0.8, worker.stats()
    assert abs(worker.analysed - clip.duration * SETTINGS.fps) <= 3, worker.stats()
    assert [e.end is None for e, _ in got] == [True, False], got


def test_an_undecodable_codec_is_reported_once_not_crashed_on() -> None:
    hub = Hub("cam-01/sub")
    hub.set_info(StreamInfo("bogus-codec", 640, 360, FPS))
    worker = MotionWorker("cam-01", SETTINGS, hub, lambda e, j: None)
    worker.start()
    try:
        for i in range(30):
            hub.publish(
                AccessUnit(b"\x00\x00\x01\x65xx", i, i, Fraction(1, FPS), i % 10 == 0, i / FPS)
            )
        time.sleep(0.5)
        assert worker.running
        assert "cannot decode bogus-codec" in worker.stats()["last_error"]
        assert worker.decoded == 0
    finally:
        worker.stop()
