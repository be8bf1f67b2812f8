"""Run inside a network namespace by test_wsd_dialects: Hello/Bye through the discovery part.

The simulator's responder multicasts Hello when it starts and Bye when it closes;
the gateway's discovery part (``DiscoveryService``) listens on the same loopback.
Prints one JSON line: the results it learnt and the registry marks it made.
"""

from __future__ import annotations

import asyncio
import json
import sys
from types import SimpleNamespace
from typing import Any

from gateway.cameras.rediscovery import DiscoveryService
from gateway.config import Settings
from gateway.sim import wsd_responder
from gateway.sim.camera import SimCamera


class Registry:
    """Knows the first camera (by endpoint); records what discovery marks."""

    def __init__(self, known: SimCamera) -> None:
        self.known = SimpleNamespace(id="cam-01", endpoint=known.endpoint, onvif=None)
        self.marks: list[tuple[str, bool]] = []

    def find_duplicate(self, *, endpoint: str | None = None, **_: Any) -> Any:
        return self.known if endpoint == self.known.endpoint else None

    def mark_seen(self, camera_id: str, seen: bool) -> None:
        self.marks.append((camera_id, seen))

    def list(self) -> list[Any]:
        return [self.known]


async def main(dialect: str) -> None:
    cameras = [
        SimCamera(index=i, address=f"127.0.10.{i}", http_port=8000, rtsp_port=8554) for i in (1, 2)
    ]
    registry = Registry(cameras[0])
    settings = Settings.model_validate(
        {"discovery": {"interfaces": ["127.0.0.1"], "interval_s": 0}}
    )
    service = DiscoveryService(settings.discovery, registry)
    await service.start()
    responder = await wsd_responder.start(cameras, "127.0.0.1", dialect=dialect)
    for _ in range(100):
        if len(service.devices) == 2:
            break
        await asyncio.sleep(0.05)
    learnt = sorted(service.devices)
    responder.close()  # Bye from both
    for _ in range(100):
        if ("cam-01", False) in registry.marks and not service.devices:
            break
        await asyncio.sleep(0.05)
    await service.stop()
    print(
        json.dumps(
            {
                "learnt": learnt,
                "left": sorted(service.devices),
                "marks": registry.marks,
                "expected": sorted(c.endpoint for c in cameras),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "standard"))
