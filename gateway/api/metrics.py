"""``/metrics``: Prometheus exposition of every part's figures (bearer token required)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.metrics import Sample, render

log = logging.getLogger(__name__)
router = APIRouter(tags=["operations"])
_STARTED = time.time()


def _core(gw: Gateway) -> Iterator[Sample]:
    yield Sample("up", 1, {"id": gw.settings.cascade.id, "level": gw.settings.cascade.level})
    yield Sample("uptime_seconds", time.time() - _STARTED, help="Seconds since start")
    yield Sample(
        "events_published_total", gw.bus.published, help="Events published", type="counter"
    )
    yield Sample(
        "event_listener_errors_total",
        gw.bus.listener_errors,
        help="Event listeners that raised",
        type="counter",
    )
    try:
        usage = shutil.disk_usage(gw.data_dir)
        yield Sample("disk_total_bytes", usage.total, help="Data filesystem size")
        yield Sample("disk_free_bytes", usage.free, help="Data filesystem free space")
        yield Sample(
            "disk_usage_ratio", (usage.total - usage.free) / max(usage.total, 1), help="Used"
        )
    except OSError:
        pass
    yield Sample(
        "login_failures_total", gw.auth.failed_logins, help="Refused logins", type="counter"
    )


def collect(gw: Gateway) -> Iterator[Sample]:
    yield from _core(gw)
    for name, metrics in gw.metric_sources.items():
        try:
            yield from metrics()
        except Exception:
            log.exception("metrics of part %s failed", name)
            yield Sample("metrics_errors", 1, {"part": name})


def _visible(caller: Caller, sample: Sample) -> bool:
    """A caller scoped to a subtree sees only that subtree's camera and child series."""
    camera = sample.labels.get("camera")
    if camera is not None and not caller.sees(camera):
        return False
    child = sample.labels.get("child")
    scope = caller.scope.strip("/")
    # A child's series concerns its whole subtree: shown when the scope is in it or under it.
    return child is None or caller.sees(child) or scope.startswith(child + "/")


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(
    caller: Caller = Depends(require("viewer")), gw: Gateway = Depends(get_gateway)
) -> PlainTextResponse:
    samples = collect(gw)
    if caller.scope:
        samples = (s for s in samples if _visible(caller, s))
    return PlainTextResponse(render(samples), media_type="text/plain; version=0.0.4; charset=utf-8")
