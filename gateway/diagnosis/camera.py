"""One camera's diagnosis: samples the motion worker's frames at a low rate, keeps states.

:meth:`CameraDiagnoser.tap` is called by the motion worker (its thread) with every
frame it analyses. Almost always it only compares a time; when a sample is due it
copies a small :class:`Picture`, and on the next frame it measures the pair (the
second frame gives temporal noise and the "identical" test of a frozen picture),
scores it, runs the hysteresis and publishes a ``diagnosis`` event for each state
that changes: once when the state is raised (``end`` unset), again with the same id
and ``end`` set when it clears.

The reference picture (per day/night mode) is learnt from the first healthy sample
and kept until the operator resets it (:meth:`reset_reference`); scene change, blur,
occlusion and colour cast are judged against it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import av
import cv2

from gateway.config import DiagnosisSettings
from gateway.diagnosis.judge import NAMES, StateMachine, healthy, reason, scores, suppress
from gateway.diagnosis.measure import (
    Measures,
    Picture,
    Reference,
    is_night,
    measure,
    picture_from_frame,
)
from gateway.events.model import Event, new_event_id

log = logging.getLogger(__name__)

Publish = Callable[[Event, bytes | None], Any]
# Told when a reference is learnt (mode, reference) or dropped by a reset (None, None).
ReferenceHook = Callable[[str | None, Reference | None], None]
Snapshot = Callable[[], bytes | None]


def frame_jpeg(frame: av.VideoFrame, quality: int = 75) -> bytes | None:
    """The frame as JPEG (colour conversion: only when a state is raised)."""
    ok, buf = cv2.imencode(
        ".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    return buf.tobytes() if ok else None


class CameraDiagnoser:
    """Diagnosis states of one camera, fed with pictures in time order."""

    def __init__(
        self,
        camera_id: str,
        settings: DiagnosisSettings,
        publish: Publish,
        source: str = "",
        *,
        references: dict[str, Reference] | None = None,
        on_reference: ReferenceHook | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self.thresholds, cam = settings.for_camera(camera_id)
        self.disabled = set(cam.disabled_kinds)
        self.publish = publish
        self.source = source
        self.machine = StateMachine(
            settings.raise_after, settings.clear_after, settings.clear_ratio
        )
        self.references: dict[str, Reference] = dict(references or {})  # "day" / "night"
        self.on_reference = on_reference
        self._reset = threading.Event()
        self._pending: Picture | None = None
        self._previous: Picture | None = None
        self._next_due = 0.0
        self.samples = 0
        self.errors = 0
        self.cpu_s = 0.0
        self.last: dict[str, Any] = {}

    # -- the motion worker's tap (worker thread) --------------------------------------
    def tap(self, frame: av.VideoFrame, t: float) -> None:
        """Called with every analysed frame; does real work once per interval."""
        if self._pending is None and t < self._next_due:
            return
        cpu0 = time.thread_time()
        try:
            pic = picture_from_frame(frame)
            if self._pending is None:
                self._next_due = t + self.settings.interval_s
                self._pending = pic
                return
            first, self._pending = self._pending, None
            self.feed(first, pic, t, lambda: frame_jpeg(frame))
        except Exception as err:  # never let diagnosis break motion detection
            self._pending = None
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                log.warning("%s: diagnosis failed (#%d): %s", self.camera_id, self.errors, err)
        finally:
            self.cpu_s += time.thread_time() - cpu0

    def _reference_changed(self, mode: str | None, ref: Reference | None) -> None:
        if self.on_reference is None:
            return
        try:
            self.on_reference(mode, ref)
        except Exception:  # storage trouble must not stop the diagnosis
            log.exception("%s: saving the diagnosis reference failed", self.camera_id)

    def restore(self, kind: str, event_id: str, since: float, snapshot: bool) -> None:
        """Take over a state raised before a restart (its event is still open)."""
        st = self.machine.states.get(kind)
        if st is None or st.active:
            return
        st.active, st.event_id, st.since, st.snapshot = True, event_id, since, snapshot

    def reset_reference(self) -> None:
        """Forget the reference pictures; the next healthy sample becomes the new one."""
        self._reset.set()

    # -- the core (any thread, one at a time) -----------------------------------------
    def feed(
        self, pic: Picture, following: Picture, t: float, snapshot: Snapshot | None = None
    ) -> list[Event]:
        """Diagnose one sample (and the frame after it); publish and return state changes."""
        if self._reset.is_set():
            self._reset.clear()
            self.references.clear()
            self._reference_changed(None, None)
            log.info("%s: diagnosis reference reset", self.camera_id)
        mode = "night" if is_night(pic) else "day"
        ref = self.references.get(mode)
        m = measure(pic, following, self._previous, ref)
        raw = scores(m, self.thresholds, ref)
        if ref is None and healthy(scores(m, self.thresholds, None)):
            self.references[mode] = m.reference()
            self._reference_changed(mode, self.references[mode])
            log.info("%s: diagnosis reference learnt (%s)", self.camera_id, mode)
        for kind in self.disabled:
            raw[kind] = 0.0
        final = suppress(raw)
        self._previous = pic
        self.samples += 1
        self.last = {
            "time": t,
            "mode": mode,
            "scores": {k: round(v, 3) for k, v in final.items()},
            "reference": sorted(self.references),
        }
        events = []
        jpeg: bytes | None = None
        for changed in self.machine.update(t, final):
            st = self.machine.states[changed]
            if st.active:
                st.event_id = new_event_id()
                if jpeg is None and snapshot is not None:
                    jpeg = snapshot()
                st.snapshot = jpeg is not None
            events.append(
                self._event(changed, t, final[changed], m, mode, jpeg if st.active else None)
            )
        for ev, snap in events:
            try:
                self.publish(ev, snap)
            except Exception:
                log.exception("%s: publishing diagnosis event %s failed", self.camera_id, ev.id)
        return [ev for ev, _ in events]

    def _event(
        self, kind: str, t: float, score: float, m: Measures, mode: str, jpeg: bytes | None
    ) -> tuple[Event, bytes | None]:
        st = self.machine.states[kind]
        zh, en = reason(kind, m, score) if st.active else (
            f"{NAMES[kind][0]}已恢复", f"{NAMES[kind][1]} cleared"
        )  # fmt: skip
        event = Event(
            id=st.event_id,
            camera=self.camera_id,
            type="diagnosis",
            start=datetime.fromtimestamp(st.since, UTC),
            end=None if st.active else datetime.fromtimestamp(t, UTC),
            score=round(float(score if st.active else st.peak), 3),
            snapshot_url=f"/api/v1/events/{st.event_id}/snapshot.jpg" if st.snapshot else None,
            source=self.source,
            data={
                "kind": kind,
                "state": "active" if st.active else "cleared",
                "name": NAMES[kind][0],
                "name_en": NAMES[kind][1],
                "reason": zh,
                "reason_en": en,
                "mode": mode,
            },
        )
        return event, jpeg

    def status(self) -> dict[str, Any]:
        """Active states and the last sample's scores."""
        active = {
            k: {"since": st.since, "event_id": st.event_id, "peak": round(st.peak, 3)}
            for k, st in self.machine.states.items()
            if st.active
        }
        return {
            "camera": self.camera_id,
            "active": active,
            "samples": self.samples,
            "errors": self.errors,
            "last": self.last,
        }
