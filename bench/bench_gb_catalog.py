"""GB/T 28181: time to push a 2,000-channel catalog to an upper platform (goal ≤ 10 s).

    .venv/bin/python bench/bench_gb_catalog.py              # pages of 1 and 10 items
    .venv/bin/python bench/bench_gb_catalog.py --cameras 500

SIPp plays the platform on loopback (tests/sipp/gb_platform_catalog.xml, with the
out-of-call scenario answering every MESSAGE); the gateway's tree is a city with 10
towns of 10 villages of 20 cameras (2,000 cameras, 110 folders). The time runs from
SIPp's query to the 200 OK of the last catalog MESSAGE.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.gb28181.part import Gb28181Part
from gateway.store.db import Database
from tests.gb28181_support import (
    DEVICE_ID,
    HOST,
    SERVER_ID,
    SIPP_DIR,
    Sipp,
    free_port,
    settings,
    upstream,
)


def tree(cameras: int) -> GatewayNode:
    per_village = max(1, cameras // 100)
    towns = []
    for t in range(10):
        villages = [
            GatewayNode(
                id=f"v{v}",
                path=f"t{t}/v{v}",
                name=f"{t}镇{v}村",
                status="online",
                cameras=[
                    CameraNode(id=f"c{c}", path=f"t{t}/v{v}/c{c}", status="online")
                    for c in range(per_village)
                ],
            )
            for v in range(10)
        ]
        towns.append(GatewayNode(id=f"t{t}", path=f"t{t}", status="online", children=villages))
    return GatewayNode(id="city", name="市", status="online", children=towns)


async def run(cameras: int, page: int, tmp: Path) -> tuple[int, float]:
    node = tree(cameras)
    port = free_port()
    part = Gb28181Part(
        settings(upstream(port, catalog_page=page, keepalive_s=60)),
        db=Database(tmp / f"bench-{page}.db"),
        tree=lambda: node,
        media=None,
    )
    await part.start()
    client = part.clients["county"]
    total = len(client.directory.channels())  # ids allocated before timing
    sipp = Sipp(
        "gb_platform_catalog.xml",
        tmp,
        *("-oocsf", str(SIPP_DIR / "gb_platform_ooc.xml")),
        *("-key", "device", DEVICE_ID, "-key", "server", SERVER_ID, "-key", "sn", "5"),
        *("-d", "600000", "-m", "1", f"{HOST}:{client.agent.local_port}"),
        port=port,
    )
    try:
        started = time.monotonic()
        while client.queries.channels_pushed != total:
            if time.monotonic() - started > 120:
                raise TimeoutError(f"catalog not pushed: {client.queries.channels_pushed}")
            await asyncio.sleep(0.005)
        return total, time.monotonic() - started
    finally:
        sipp.stop()
        await part.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for page in (1, 10):
            total, took = asyncio.run(run(args.cameras, page, Path(tmp)))
            print(f"catalog of {total} channels, {page} per MESSAGE: {took:.2f} s")


if __name__ == "__main__":
    main()
