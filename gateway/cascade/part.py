"""The ``cascade`` part: the downlink (children) always, the uplink when a parent is set."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from gateway.cameras.registry import Registry
from gateway.cascade.downlink import Downlink
from gateway.cascade.inspect import Inspections
from gateway.cascade.local import LocalParts
from gateway.cascade.protocol import GatewayNode
from gateway.cascade.remote import RemoteSource
from gateway.cascade.serve import MapAnswers
from gateway.cascade.tree import build, find_camera
from gateway.cascade.uplink import Uplink
from gateway.core import Core
from gateway.metrics import Sample
from gateway.recorder.service import Recorder
from gateway.reports.service import ReportService
from gateway.streams.manager import StreamManager

log = logging.getLogger(__name__)


class Cascade:
    """Joins this gateway to its parent and its children (三级联网)."""

    def __init__(
        self,
        core: Core,
        *,
        registry: Registry | None,
        streams: StreamManager | None,
        recorder: Recorder | None,
        reports: ReportService | None,
        maps: MapAnswers | None,
    ) -> None:
        self.settings = core.settings.cascade
        self.streams = streams
        self.downlink = Downlink(core)
        # This gateway's own parts, as camera operations by path use them; lent to the
        # parts built after the cascade (export, GB/T 28181) and used by ours below.
        self.local = LocalParts(core.settings, registry, streams, recorder, reports, self)
        # on-demand 巡检 of subtrees
        self.inspections = Inspections(core, self.local, self.downlink)
        self.uplink: Uplink | None = None
        if self.settings.parent is not None:
            self.uplink = Uplink(core, self.local, self.downlink, self.inspections, maps)

    async def start(self) -> None:
        if self.streams is not None:
            # Streams are built before us: we hand them our resolver for children's cameras.
            self.streams.add_resolver(self.resolve)
        await self.downlink.start()
        await self.inspections.start()
        if self.uplink is not None:
            await self.uplink.start()

    async def stop(self) -> None:
        if self.uplink is not None:
            await self.uplink.stop()
        await self.inspections.stop()
        await self.downlink.stop()

    def tree(self) -> GatewayNode:
        """The device tree: this gateway's cameras and every child's subtree."""
        return build(self.local)

    def resolve(
        self, camera_id: str, profile: str = "main", variant: str | None = None
    ) -> RemoteSource | None:
        """A stream source for a camera below one of our children, or None."""
        if not self.downlink.owns(camera_id):
            return None
        link = self.downlink.links[camera_id.partition("/")[0]]
        if link.tree is not None and find_camera(link.tree, camera_id) is None:
            return None  # the child told us its cameras; this is not one of them
        return RemoteSource(self.downlink, camera_id, profile, variant)

    def metrics(self) -> Iterator[Sample]:
        """Prometheus samples (collected by ``/metrics``)."""
        for link in self.downlink.links.values():
            labels = {"child": link.name}
            yield Sample("cascade_child_up", int(link.online), labels, help="Child connected")
            yield Sample(
                "cascade_child_events_total",
                link.events_in,
                labels,
                help="Events received from the child",
                type="counter",
            )
            yield Sample(
                "cascade_child_rejected_total",
                link.rejected,
                labels,
                help="Child messages rejected",
                type="counter",
            )
        yield Sample(
            "cascade_transfers_dropped_total",
            self.downlink.transfers_dropped,
            help="Child bodies (clips, snapshots) ended because their reader fell behind",
            type="counter",
        )
        up = self.uplink
        if up is not None:
            yield Sample("cascade_uplink_up", int(up.connected), help="Connected to the parent")
            yield Sample(
                "cascade_uplink_bytes_total",
                up.bytes_out,
                help="Bytes sent to the parent",
                type="counter",
            )
            yield Sample("cascade_outbox_pending", up.outbox.pending(), help="Events not acked")
            yield Sample("cascade_uplink_streams", len(up.server.streams), help="Streams sent up")

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.settings.id,
            "level": self.settings.level,
            "uplink": self.uplink.stats() if self.uplink else None,
            "children": self.downlink.stats(),
        }
