"""What the running streams report: rates sampled each second, per-hub stats, metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gateway.metrics import Sample
from gateway.streams.leases import StreamEntry


async def sample_rates(entries: Callable[[], Iterable[StreamEntry]]) -> None:
    """Every second, the input frame rate and bitrate of each running stream, forever."""
    while True:
        await asyncio.sleep(1.0)
        now = time.monotonic()
        for entry in list(entries()):
            t0, n0, b0 = entry.sample
            n, b = entry.hub.published, entry.hub.bytes_in
            if t0:
                dt = now - t0
                entry.fps_in = (n - n0) / dt
                entry.bitrate_bps = (b - b0) * 8 / dt
                if entry.hub.info is not None and entry.variant is None:
                    entry.hub.info.bitrate_bps = entry.bitrate_bps
            entry.sample = (now, n, b)


def stream_stats(entries: Iterable[StreamEntry]) -> list[dict[str, Any]]:
    """Per hub: rates, subscribers, state, reconnects, last error (for /metrics, UI)."""
    out = []
    for entry in sorted(entries, key=lambda e: e.key):
        info = entry.hub.info
        subs = entry.hub.subscribers
        src = entry.source.stats()
        out.append(
            {
                "key": entry.key,
                "camera": entry.camera_id,
                "profile": entry.profile,
                "variant": entry.variant,
                "state": src["state"],
                "lingering": entry.linger is not None,
                "fps_in": round(entry.fps_in, 2),
                "bitrate_bps": round(entry.bitrate_bps),
                "subscribers": len(subs),
                "consumers": [lease.consumer for lease in list(entry.leases)],
                "dropped": sum(s.dropped for s in subs),
                "reconnects": src["reconnects"],
                "last_error": src["last_error"],
                "codec": info.codec if info else None,
                "width": info.width if info else None,
                "height": info.height if info else None,
                "fps": info.fps if info else None,
                "profile_name": info.profile if info else None,
                "gop": info.gop if info else None,
                "has_b_frames": info.has_b_frames if info else None,
                "passthrough_ok": info.passthrough_ok if info else None,
                "source": src,
            }
        )
    return out


def stream_metrics(rows: Iterable[dict[str, Any]]) -> Iterator[Sample]:
    """Prometheus samples (see ``gateway.metrics``) of :func:`stream_stats` rows."""
    for s in rows:
        labels = {"stream": s["key"], "camera": s["camera"]}
        yield Sample("stream_fps", s["fps_in"], labels, "Access units per second in")
        yield Sample("stream_bitrate_bps", s["bitrate_bps"], labels, "Bits per second in")
        yield Sample("stream_subscribers", s["subscribers"], labels, "Hub subscribers")
        yield Sample("stream_reconnects_total", s["reconnects"], labels, "Reconnects", "counter")
        yield Sample(
            "stream_dropped", s["dropped"], labels, "Access units dropped for slow readers"
        )
        yield Sample(
            "stream_assembler_dropped_total",
            s["source"].get("assembler_dropped", 0),
            labels,
            "Held data dropped beyond the access-unit assembler's byte bounds",
            "counter",
        )
        yield Sample(
            "stream_timestamp_glitches_total",
            s["source"].get("timestamp_glitches", 0),
            labels,
            "Lone backward timestamp steps ignored (not taken for B-frames)",
            "counter",
        )
        yield Sample(
            "stream_online",
            1 if s["state"] == "online" else 0,
            labels,
            "1 while the source delivers",
        )
