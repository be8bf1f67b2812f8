"""Diagnosis states: hysteresis, events (zh-CN + en reason, snapshot, same id on clear),
per-camera tuning, reference reset, and the tap on real decoded frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from gateway.config import ConfigError, DiagnosisSettings, parse_settings
from gateway.diagnosis.camera import CameraDiagnoser
from gateway.diagnosis.judge import StateMachine
from gateway.diagnosis.service import DiagnosisService
from gateway.diagnosis.synth import W, faulty, make_clip, scene
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.store.db import Database


def test_state_raises_after_n_samples_over_and_clears_after_m_under() -> None:
    sm = StateMachine(raise_after=2, clear_after=2, clear_ratio=0.8)
    assert sm.update(0, {"blur": 1.5}) == []
    assert sm.update(1, {"blur": 0.5}) == []  # the run broke: count again
    assert sm.update(2, {"blur": 1.2}) == []
    assert sm.update(3, {"blur": 1.1}) == ["blur"] and sm.active() == ["blur"]
    assert sm.update(4, {"blur": 0.9}) == []  # between clear_ratio and 1: stays
    assert sm.update(5, {"blur": 0.7}) == []
    assert sm.update(6, {"blur": 0.1}) == ["blur"] and sm.active() == []


def test_occlusion_event_has_kind_score_reasons_snapshot_and_clears_with_the_same_id() -> None:
    published: list[tuple[Event, bytes | None]] = []
    diag = CameraDiagnoser("cam-01", DiagnosisSettings(), lambda e, j: published.append((e, j)))
    clip = make_clip("occlusion", 1, False)
    for i, (pic, following) in enumerate(clip.samples):
        diag.feed(pic, following, 1_700_000_000 + 10.0 * i, lambda: b"\xff\xd8jpeg")
    assert [(e.data["kind"], e.data["state"]) for e, _ in published] == [
        ("occlusion", "active"),
        ("occlusion", "cleared"),
    ]
    (raised, jpeg), (cleared, none) = published
    assert raised.type == "diagnosis" and raised.end is None and raised.score >= 1.0
    assert raised.data["reason"].startswith("遮挡：") and raised.data["reason_en"].startswith(
        "occlusion: "
    )
    assert jpeg == b"\xff\xd8jpeg" and raised.snapshot_url.endswith(f"{raised.id}/snapshot.jpg")
    assert cleared.id == raised.id and cleared.end is not None and none is None
    assert cleared.snapshot_url == raised.snapshot_url  # the stored snapshot stays linked


def test_per_camera_tuning_turns_a_kind_off_and_moves_a_threshold() -> None:
    settings = parse_settings(
        {
            "diagnosis": {
                "cameras": {
                    "cam-02": {"disabled_kinds": ["occlusion"]},
                    "cam-03": {"thresholds": {"occlusion_area": 0.99}},
                }
            }
        }
    ).diagnosis
    clip = make_clip("occlusion", 1, False)
    for cid, expect in (("cam-01", True), ("cam-02", False), ("cam-03", False)):
        diag = CameraDiagnoser(cid, settings, lambda e, j: None)
        kinds = set()
        for i, (pic, following) in enumerate(clip.samples):
            kinds |= {e.data["kind"] for e in diag.feed(pic, following, 10.0 * i)}
        assert ("occlusion" in kinds) is expect, (cid, kinds)
    with pytest.raises(ConfigError, match=r"diagnosis\.cameras\.cam-01\.thresholds"):
        parse_settings({"diagnosis": {"cameras": {"cam-01": {"thresholds": {"nope": 1}}}}})
    with pytest.raises(ConfigError, match=r"diagnosis\.interval_s"):
        parse_settings({"diagnosis": {"interval_s": 0}})


def test_scene_change_stays_until_the_operator_resets_the_reference() -> None:
    clip = make_clip("scene_change", 2, False, before=3, during=8)
    diag = CameraDiagnoser("cam-01", DiagnosisSettings(), lambda e, j: None)
    events = []
    for i, (pic, following) in enumerate(clip.samples[:8]):
        events += diag.feed(pic, following, 10.0 * i)
        if i == 5:
            assert diag.machine.active() == ["scene_change"]
            diag.reset_reference()  # the operator accepts the new view
    assert [(e.data["kind"], e.data["state"]) for e in events] == [
        ("scene_change", "active"),
        ("scene_change", "cleared"),
    ]


def _frame(y: np.ndarray, u: np.ndarray, v: np.ndarray, n: int) -> av.VideoFrame:
    i420 = np.concatenate([y, u.reshape(-1, W), v.reshape(-1, W)]).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
    frame.pts, frame.time_base = n, Fraction(1, 5)
    return frame


def test_tap_samples_real_frames_at_the_interval_and_publishes_on_the_bus() -> None:
    bus = EventBus(None)
    seen: list[Event] = []
    bus.add_listener(seen.append)
    service = DiagnosisService(DiagnosisSettings(interval_s=2.0), bus, source="town")
    tap = service.tap_for("cam-01")
    assert tap is not None
    rng = np.random.default_rng(5)
    planes = scene(rng, night=False)
    covered = faulty("occlusion", planes, np.random.default_rng(1), False)
    n = 0
    for second in range(30):  # 5 fps for 30 s; covered from second 10 to 20
        y, u, v = covered if 10 <= second < 20 else planes
        for _ in range(5):
            noisy = np.clip(y + rng.normal(0, 1.5, y.shape), 0, 255)
            tap(_frame(noisy, u, v, n), 1000.0 + n / 5)
            n += 1
    diag = service.cameras["cam-01"]
    assert 14 <= diag.samples <= 16  # one every 2 s, not one per frame
    kinds = [(e.data["kind"], e.data["state"], e.source) for e in seen]
    assert kinds == [("occlusion", "active", "town"), ("occlusion", "cleared", "town")]
    assert 1010 <= seen[0].start.timestamp() <= 1016
    assert diag.cpu_s < 1.0 and diag.errors == 0
    off = DiagnosisService(
        parse_settings({"diagnosis": {"cameras": {"cam-09": {"enabled": False}}}}).diagnosis, bus
    )
    assert off.tap_for("cam-09") is None and off.tap_for("cam-01") is not None


def test_a_restart_keeps_the_reference_and_clears_the_state_it_left_open(tmp_path: Path) -> None:
    clip = make_clip("scene_change", 3, False, before=3, during=4)
    db = Database(tmp_path / "gw.db")
    first = DiagnosisService(DiagnosisSettings(), EventBus(db), source="village-1", db=db)
    for i, (pic, following) in enumerate(clip.samples[:6]):  # 3 healthy, 3 turned
        first.diagnoser("cam-01").feed(pic, following, 10.0 * i)
    raised = first.cameras["cam-01"].machine.states["scene_change"]
    assert raised.active

    # the gateway restarts while the camera is still turned away
    bus = EventBus(db)
    seen: list[Event] = []
    bus.add_listener(seen.append)
    second = DiagnosisService(DiagnosisSettings(), bus, source="village-1", db=db)
    second.restore()
    diag = second.diagnoser("cam-01")
    assert diag.machine.active() == ["scene_change"] and "day" in diag.references
    for i, (pic, following) in enumerate(clip.samples[6:], start=6):  # 1 turned, 3 back
        diag.feed(pic, following, 10.0 * i)
    assert [(e.id, e.data["state"]) for e in seen] == [(raised.event_id, "cleared")]
    assert seen[0].start.timestamp() == raised.since
