"""``gw.diagnosis``: one :class:`CameraDiagnoser` per camera, fed by the motion workers.

The part decodes nothing itself: the motion service asks :meth:`DiagnosisService.tap_for`
for a frame tap when it starts a camera's worker, and the worker calls that tap with
every frame it analyses (its thread). Diagnosers outlive worker restarts, so the
reference pictures and the open states survive a reconnect. State changes go to the
event bus as ``type="diagnosis"`` events, like every other event (SSE, API, MQTT,
the cascade uplink and linkage rules all see them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import av

from gateway.config import DiagnosisSettings
from gateway.diagnosis.camera import CameraDiagnoser
from gateway.diagnosis.judge import KINDS
from gateway.diagnosis.measure import Reference
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.store import diagnosis as diag_store
from gateway.store import events as event_store
from gateway.store.db import Database

log = logging.getLogger(__name__)

FrameTap = Callable[[av.VideoFrame, float], None]


class DiagnosisService:
    """The ``diagnosis`` part: per-camera diagnosers and their figures."""

    def __init__(
        self,
        settings: DiagnosisSettings,
        bus: EventBus,
        source: str = "",
        db: Database | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.source = source
        self.db = db
        self.cameras: dict[str, CameraDiagnoser] = {}
        self._lock = threading.Lock()
        if db is not None:
            diag_store.init(db)

    async def start(self) -> None:
        self.restore()

    def restore(self) -> None:
        """Take over the states still open from before a restart, so they clear properly."""
        if self.db is None:
            return
        for ev in event_store.query(self.db, type="diagnosis", limit=10_000):
            kind = ev.data.get("kind")
            if ev.end is not None or ev.source != self.source or "/" in ev.camera:
                continue
            if isinstance(kind, str) and kind in KINDS:
                self.diagnoser(ev.camera).restore(
                    kind, ev.id, ev.start.timestamp(), ev.snapshot_url is not None
                )

    async def stop(self) -> None:
        return None

    def tap_for(self, camera_id: str) -> FrameTap | None:
        """The frame tap for a camera's motion worker, or None when it is turned off."""
        _, cam = self.settings.for_camera(camera_id)
        if not cam.enabled:
            return None
        return self.diagnoser(camera_id).tap

    def diagnoser(self, camera_id: str) -> CameraDiagnoser:
        with self._lock:
            diag = self.cameras.get(camera_id)
            if diag is None:
                diag = CameraDiagnoser(
                    camera_id,
                    self.settings,
                    self._publish,
                    self.source,
                    references=self._load_references(camera_id),
                    on_reference=lambda mode, ref: self._save_reference(camera_id, mode, ref),
                )
                self.cameras[camera_id] = diag
            return diag

    def _load_references(self, camera_id: str) -> dict[str, Reference]:
        out: dict[str, Reference] = {}
        if self.db is None:
            return out
        for mode, body in diag_store.load(self.db, camera_id).items():
            try:
                out[mode] = Reference.from_json(body)
            except (ValueError, KeyError, TypeError) as err:
                log.warning(
                    "%s: stored diagnosis reference (%s) unusable: %s", camera_id, mode, err
                )
        return out

    def _save_reference(self, camera_id: str, mode: str | None, ref: Reference | None) -> None:
        if self.db is None:
            return
        if mode is None or ref is None:
            diag_store.delete(self.db, camera_id)
        else:
            diag_store.put(self.db, camera_id, mode, time.time(), ref.to_json())

    def reset_reference(self, camera_id: str) -> bool:
        """Relearn the camera's reference picture from its next healthy sample."""
        diag = self.cameras.get(camera_id)
        if diag is None:
            return False
        diag.reset_reference()
        return True

    def _publish(self, event: Event, jpeg: bytes | None) -> None:
        self.bus.publish(event, snapshot_jpeg=jpeg)

    def status(self) -> list[dict[str, Any]]:
        return [d.status() for _, d in sorted(self.cameras.items())]

    def metrics(self) -> Iterator[Any]:
        """Prometheus: one gauge per camera and kind (1 while the state is raised)."""
        from gateway.metrics import Sample

        for cid, diag in sorted(self.cameras.items()):
            for kind in KINDS:
                yield Sample(
                    "diagnosis_state",
                    int(diag.machine.states[kind].active),
                    {"camera": cid, "kind": kind},
                    "1 while a video-quality fault is raised",
                )
            labels = {"camera": cid}
            yield Sample(
                "diagnosis_samples_total", diag.samples, labels, "Samples diagnosed", "counter"
            )
            yield Sample(
                "diagnosis_cpu_seconds_total", diag.cpu_s, labels, "CPU of the diagnosis", "counter"
            )
