"""What ``/api/v1/health`` reports: the truth about the parts, the database, the disk.

The report is read by the container's health check and by load balancers, so it
must say "unavailable" exactly when the gateway cannot do its job: the database
cannot be written (nothing can be recorded, indexed or configured) or recording is
paused because the recordings disk is full. Cameras offline or the parent out of
reach are the world's state, not the gateway's fault: reported, never a 503.

The endpoint is open (no login), so it reports states and counts only: no paths,
no addresses, no error text from peers.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.app import Gateway

# A writer that holds the database longer than this counts as "cannot write".
DB_PROBE_TIMEOUT_S = 2.0
# Probes closer together than this share one answer (a load balancer may poll hard).
DB_PROBE_CACHE_S = 1.0


@dataclass
class Health:
    """The report and whether the gateway can do its job (HTTP 200) or not (503)."""

    ok: bool
    body: dict[str, Any] = field(default_factory=dict)


class DatabaseProbe:
    """Writes one row in its own short-timeout connection: 'writable' means written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._at = 0.0
        self._last: dict[str, Any] = {}

    def check(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if not self._last or now - self._at > DB_PROBE_CACHE_S:
                self._last = self._write()
                self._at = time.monotonic()
            return dict(self._last)

    def _write(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            conn = sqlite3.connect(str(self.path), timeout=DB_PROBE_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            return {"writable": False, "error": _sqlite_reason(err)}
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS health_probe ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)"
            )
            conn.execute(
                "INSERT INTO health_probe(id, at) VALUES (1, ?)"
                " ON CONFLICT(id) DO UPDATE SET at = excluded.at",
                (time.time(),),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            return {"writable": False, "error": _sqlite_reason(err)}
        finally:
            conn.close()
        return {"writable": True, "write_ms": round((time.monotonic() - started) * 1000, 1)}


def _sqlite_reason(err: sqlite3.Error) -> str:
    # SQLite's messages name no paths ("database is locked", "disk I/O error").
    return f"{type(err).__name__}: {err}"[:200]


def report(gw: Gateway, probe: DatabaseProbe) -> Health:
    """The gateway's health; blocking (a database write), so call it off the event loop."""
    from gateway import __version__

    problems: list[str] = []
    parts = {name: {"state": gw.states.get(name, "unknown")} for name in gw.parts}
    for name, info in parts.items():
        if info["state"] != "running":
            problems.append(f"part {name} is {info['state']}")
    database = probe.check()
    if not database["writable"]:
        problems.append("database is not writable")
    disk = _disk(gw)
    if disk["state"] == "paused":
        problems.append("recording is paused: the recordings disk is full")
    workers = _relay_workers(gw)
    if workers and not workers["running"]:
        problems.append("no relay worker is running: live video cannot be sent")
    body = {
        "status": "ok" if not problems else "unavailable",
        "problems": problems,
        "version": __version__,
        "id": gw.settings.cascade.id,
        "level": gw.settings.cascade.level,
        "parts": parts,
        "database": database,
        "disk": disk,
        "cameras": _cameras(gw),
        "uplink": _uplink(gw),
        **({"relay_workers": workers} if workers else {}),
    }
    return Health(ok=not problems, body=body)


def _relay_workers(gw: Gateway) -> dict[str, int] | None:
    pool = gw.relay.pool
    if pool is None:
        return None
    return {
        "configured": len(pool.workers),
        "running": pool.running,
        "restarts": pool.restarts,
    }


def _disk(gw: Gateway) -> dict[str, Any]:
    recorder = gw.recorder
    if recorder is None:
        return {"state": "off"}
    result = recorder.health()
    exporter = gw.export
    if exporter is not None:  # exports share the recordings filesystem: shown with it
        result["export_bytes"] = exporter.used_bytes()
    return result


def _cameras(gw: Gateway) -> dict[str, int]:
    registry = gw.registry
    if registry is None:
        return {"online": 0, "total": len(gw.settings.cameras)}
    cams = [c for c in registry.list() if c.enabled]
    return {"online": sum(1 for c in cams if c.status == "online"), "total": len(cams)}


def _uplink(gw: Gateway) -> dict[str, Any]:
    cascade = gw.cascade
    uplink = cascade.uplink if cascade is not None else None
    if uplink is None:
        return {"state": "none"}
    if not uplink.enabled:
        return {"state": "disabled"}
    return {"state": "connected" if uplink.connected else "connecting"}
