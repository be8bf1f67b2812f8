"""Many villages in one process, for the city-scale test and bench (issue 15).

Each village is our real cascade child: its own identity, token, SQLite outbox and
catalog, and the real :class:`gateway.cascade.uplink.Uplink` speaking the real
protocol to its town. What is left out is only what a village does with cameras
(ingest, motion, recording): its cameras are a small in-memory registry whose
status the test sets, and its events are published on its own real event bus.

Run: ``python -m tests.city_swarm SPEC.json``. SPEC is
``{"villages": [{"id", "name", "parent_url", "token", "cameras"}], "data_dir"}``.
It prints one JSON line ``{"control": PORT}`` and then takes JSON-line commands on
that TCP port (127.0.0.1), one answer line each:

- ``{"op": "stats"}`` → per village: connected, connects, events sent and acknowledged;
- ``{"op": "status", "village", "camera", "status"}`` → the camera changes status;
- ``{"op": "events", "rate", "seconds"}`` → motion events from every village in turn,
  ``rate`` per second in all, each carrying ``data.src``, ``data.seq`` (1, 2, … per
  village) and ``data.t`` (wall clock at publishing); answers when all are published;
- ``{"op": "stop"}`` → ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from gateway.cascade.inspect import Inspections
from gateway.cascade.uplink import Uplink
from gateway.config import Settings, parse_settings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.store.db import Database


class _Camera:
    def __init__(self, cam_id: str, name: str) -> None:
        self.id = cam_id
        self.name = name
        self.status = "online"

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status}


class _Registry:
    def __init__(self, cameras: list[_Camera]) -> None:
        self.cameras = {c.id: c for c in cameras}
        self._listeners: list[Any] = []

    def list(self) -> list[_Camera]:
        return list(self.cameras.values())

    def get(self, cam_id: str) -> _Camera | None:
        return self.cameras.get(cam_id)

    def on_change(self, fn: Any) -> None:
        self._listeners.append(fn)

    def set_status(self, cam_id: str, status: str) -> None:
        cam = self.cameras[cam_id]
        cam.status = status
        for fn in self._listeners:
            fn(cam)


class _NoChildren:
    def on_change(self, fn: Any) -> None:
        pass

    def child_trees(self) -> list[Any]:
        return []


class Village:
    """What the uplink needs of a gateway: settings, database, bus and registry."""

    def __init__(self, spec: dict[str, Any], data_dir: Path) -> None:
        self.settings: Settings = parse_settings(
            {
                "cascade": {
                    "level": "village",
                    "id": spec["id"],
                    "name": spec["name"],
                    "heartbeat_s": 2.0,
                    "offline_after_s": 6.0,
                    "parent": {"url": spec["parent_url"], "token": spec["token"]},
                }
            }
        )
        self.db = Database(data_dir / f"{spec['id']}.db")
        self.bus = EventBus(self.db)
        self.registry = _Registry(
            [
                _Camera(f"cam-{i:03d}", f"{spec['name']} 摄像机 {i:03d}")
                for i in range(spec["cameras"])
            ]
        )
        # The rest of a gateway's local view (gateway.cascade.local.Local): all off.
        self.streams = self.recorder = self.reports = self.cascade = None
        children: Any = _NoChildren()
        self.uplink = Uplink(self, self, children, Inspections(self, self, children), None)
        self.seq = 0

    def publish_motion(self) -> None:
        self.seq += 1
        cam = f"cam-{self.seq % len(self.registry.cameras):03d}"
        self.bus.publish(
            Event(
                camera=cam,
                type="motion",
                score=0.5,
                data={"src": self.settings.cascade.id, "seq": self.seq, "t": time.time()},
            )
        )


class Swarm:
    def __init__(self, villages: list[Village]) -> None:
        self.villages = {v.settings.cascade.id: v for v in villages}
        self.stopped = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while line := await reader.readline():
                try:
                    answer = await self.command(json.loads(line))
                except Exception as err:  # a bad command is answered, never fatal
                    answer = {"error": f"{type(err).__name__}: {err}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        writer.close()

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd.get("op")
        if op == "stats":
            return {
                vid: {
                    "connected": v.uplink.connected,
                    "connects": v.uplink.connects,
                    "events_sent": v.uplink.events_sent,
                    "acked_seq": v.uplink.acked_seq,
                    "published": v.seq,
                    "outbox": v.uplink.outbox.pending(),
                }
                for vid, v in self.villages.items()
            }
        if op == "status":
            village = self.villages[cmd["village"]]
            village.registry.set_status(cmd["camera"], cmd["status"])
            return {"ok": True, "t": time.time()}
        if op == "events":
            return await self._events(float(cmd["rate"]), float(cmd["seconds"]))
        if op == "stop":
            self.stopped.set()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}")

    async def _events(self, rate: float, seconds: float) -> dict[str, Any]:
        # Published from a thread, as a gateway's motion workers do: the event loop stays
        # free for the uplinks (publishing stores the event in SQLite).
        return await asyncio.to_thread(self._publish, rate, seconds)

    def _publish(self, rate: float, seconds: float) -> dict[str, Any]:
        villages = list(self.villages.values())
        total = int(rate * seconds)
        start = time.monotonic()
        for n in range(total):
            due = start + n / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            villages[n % len(villages)].publish_motion()
        return {"published": total, "seconds": round(time.monotonic() - start, 2)}


async def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    data_dir = Path(spec["data_dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    villages = [Village(v, data_dir) for v in spec["villages"]]
    swarm = Swarm(villages)
    server = await asyncio.start_server(swarm.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for v in villages:
        await v.uplink.start()
    print(json.dumps({"control": port, "villages": len(villages)}), flush=True)
    await swarm.stopped.wait()
    for v in villages:
        await v.uplink.stop()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
