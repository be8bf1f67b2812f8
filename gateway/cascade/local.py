"""This gateway's own parts, as camera operations by path need them (:class:`Local`).

:mod:`gateway.cascade.access` and :mod:`gateway.cascade.tree` serve a path here from
these parts, or hand it to the child that owns it through the cascade's downlink. The
cascade part builds a :class:`LocalParts` from its neighbours and lends it to the parts
built after it (export, GB/T 28181); ``gateway.app.Gateway`` has the same attributes,
so code holding the gateway passes it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.cameras.registry import Registry
from gateway.cascade.downlink import Downlink
from gateway.config import Settings
from gateway.recorder.service import Recorder
from gateway.reports.service import ReportService
from gateway.streams.manager import StreamManager


class Cascading(Protocol):
    """The cascade part as seen from here: its children, through the downlink."""

    @property
    def downlink(self) -> Downlink: ...


class Local(Protocol):
    """The parts a camera path is served from on this gateway; ``None``: that part is off."""

    @property
    def settings(self) -> Settings: ...

    @property
    def registry(self) -> Registry | None: ...

    @property
    def streams(self) -> StreamManager | None: ...

    @property
    def recorder(self) -> Recorder | None: ...

    @property
    def reports(self) -> ReportService | None: ...

    @property
    def cascade(self) -> Cascading | None: ...


@dataclass(frozen=True)
class LocalParts:
    """A :class:`Local` made of the parts themselves (what the cascade part lends out)."""

    settings: Settings
    registry: Registry | None
    streams: StreamManager | None
    recorder: Recorder | None
    reports: ReportService | None
    cascade: Cascading | None
