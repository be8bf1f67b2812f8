"""``gw.diagnosis``: one :class:`CameraDiagnoser` per camera, fed by the motion workers.

The part decodes nothing itself: the motion service asks :meth:`DiagnosisService.tap_for`
for a frame tap when it starts a camera's worker, and the worker calls that tap with
every frame it analyses (its thread). Diagnosers outlive worker restarts, so the
reference pictures and the open states survive a reconnect. State changes go to the
event bus as ``type="diagnosis"`` events, like every other event (SSE, API, MQTT,
the cascade uplink and linkage rules all see them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import av

from gateway.config import DiagnosisSettings
from gateway.diagnosis.camera import CameraDiagnoser
from gateway.diagnosis.judge import KINDS
from gateway.events.bus import EventBus
from gateway.events.model import Event

FrameTap = Callable[[av.VideoFrame, float], None]


class DiagnosisService:
    """The ``diagnosis`` part: per-camera diagnosers and their figures."""

    def __init__(self, settings: DiagnosisSettings, bus: EventBus, source: str = "") -> None:
        self.settings = settings
        self.bus = bus
        self.source = source
        self.cameras: dict[str, CameraDiagnoser] = {}
        self._lock = threading.Lock()

    async def start(self) -> None:
        return None

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
                diag = CameraDiagnoser(camera_id, self.settings, self._publish, self.source)
                self.cameras[camera_id] = diag
            return diag

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


def build(gw: Any) -> DiagnosisService | None:
    """Factory for ``gateway.app._factories()``: None when diagnosis is turned off."""
    settings: DiagnosisSettings = gw.settings.diagnosis
    if not settings.enabled:
        return None
    return DiagnosisService(settings, gw.bus, source=gw.path)
