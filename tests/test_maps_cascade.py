"""E-maps through the cascade, and the upload bound, with real gateway processes.

A town and a village (``gateway run`` each, joined by a cascade token). The village's
map and pins are read at the town through the cascade (paths rebased to the town's
view); the town's map shows the village as an area. A 200 MB upload is answered 413
long before 200 MB have been sent, whether its length is announced or streamed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cascade_support import issue_token_api, wait_for
from tests.support import GatewayProcess
from tests.test_maps_api import png

pytestmark = pytest.mark.timeout(180)
CAM = {"id": "cam-01", "name": "村口", "rtsp_url": "rtsp://127.0.0.1:9/none"}
BEAT = {"heartbeat_s": 1.0, "offline_after_s": 3.0}


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, GatewayProcess]]:
    tmp: Path = tmp_path_factory.mktemp("maps")
    procs: list[GatewayProcess] = []
    try:
        town = GatewayProcess(
            tmp,
            {
                "cameras": [{**CAM, "name": "镇政府大门"}],
                "cascade": {"level": "town", "id": "town-a", "name": "城关镇", **BEAT},
            },
            name="town",
        )
        procs.append(town)
        parent = {"url": town.base_url, "token": issue_token_api(town, "village-1")}
        village = GatewayProcess(
            tmp,
            {
                "cameras": [CAM],
                "cascade": {
                    "level": "village",
                    "id": "village-1",
                    "name": "东村",
                    **BEAT,
                    "parent": parent,
                },
            },
            name="village",
        )
        procs.append(village)

        def joined() -> bool:
            tree = town.client.get("/api/v1/tree").json()
            return any(
                c["path"] == "village-1" and c["status"] == "online" for c in tree["children"]
            )

        wait_for(joined, 30, "the village online in the town's tree", every=0.2)
        yield {"town": town, "village": village}
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_a_child_map_is_read_through_the_cascade(levels: dict[str, GatewayProcess]) -> None:
    town, village = levels["town"], levels["village"]
    image = png(400, 300)
    assert village.client.put("/api/v1/maps/image", content=image).status_code == 200
    layout = {"pins": [{"camera": "cam-01", "x": 0.4, "y": 0.6}]}
    r = village.client.put("/api/v1/maps/layout", json=layout)
    assert r.status_code == 200, r.text
    # The town places the village on its own map as an area.
    assert town.client.put("/api/v1/maps/image", content=png(800, 500)).status_code == 200
    areas = {"areas": [{"node": "village-1", "x": 0.5, "y": 0.2, "w": 0.2, "h": 0.1}]}
    r = town.client.put("/api/v1/maps/layout", json=areas)
    assert r.status_code == 200, r.text
    area = r.json()["areas"][0]
    assert area["name"] == "东村" and area["status"] == "online" and area["cameras_total"] == 1
    # The village's map, as the town sees it.
    r = town.client.get("/api/v1/maps", params={"node": "village-1"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["node"] == "village-1" and (doc["width"], doc["height"]) == (400, 300)
    assert doc["editable"] is False
    assert [(p["camera"], p["x"], p["name"]) for p in doc["pins"]] == [
        ("village-1/cam-01", 0.4, "村口")
    ]
    img = town.client.get(doc["image_url"])
    assert img.status_code == 200 and img.content == image
    assert img.headers["content-type"] == "image/png"
    assert "default-src 'none'" in img.headers["content-security-policy"]
    # Changing it is the village's business.
    r = town.client.put("/api/v1/maps/layout", params={"node": "village-1"}, json=layout)
    assert r.status_code == 409 and "下级" in r.json()["detail"]
    r = town.client.get("/api/v1/maps", params={"node": "village-9"})
    assert r.status_code == 404


def _send_until_answered(
    port: int, token: str, head: str, chunk: bytes, limit: int
) -> tuple[str, int]:
    """Send ``head`` and then ``chunk`` repeatedly until the server answers (or ``limit``)."""
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.replace("TOKEN", token).encode())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sent < limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)  # whole chunks: a cut one would break chunked framing
            except OSError:  # the server closed the connection after answering
                break
            sent += len(chunk)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
    return answer.decode("latin-1").split("\r\n")[0], sent


def test_a_200_mb_upload_is_refused_without_reading_it(levels: dict[str, GatewayProcess]) -> None:
    town = levels["town"]
    token = str(town.token)
    before = town.client.get("/api/v1/maps").json()
    big = 200 * 1024 * 1024
    announced = (
        "PUT /api/v1/maps/image HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer TOKEN\r\n"
        f"Content-Type: image/png\r\nContent-Length: {big}\r\n\r\n"
    )
    t0 = time.monotonic()
    status, sent = _send_until_answered(town.port, token, announced, b"\0" * 65536, big)
    assert " 413 " in status, status
    assert sent < 64 * 1024 * 1024, sent
    print(f"announced 200 MB: 413 after {sent} bytes sent")
    assert time.monotonic() - t0 < 30
    # Streamed without a length: cut off once past the bound (20 MB), not at 200 MB.
    chunked = (
        "PUT /api/v1/maps/image HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer TOKEN\r\n"
        "Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"\0" * 65536
    status, sent = _send_until_answered(
        town.port, token, chunked, b"%x\r\n" % len(piece) + piece + b"\r\n", big
    )
    assert " 413 " in status, status
    assert sent < 100 * 1024 * 1024, sent
    print(f"chunked: 413 after {sent / 1048576:.1f} MB sent (bound 20 MB)")
    after: dict[str, Any] = town.client.get("/api/v1/maps").json()
    assert after.get("sha256") == before.get("sha256")  # the map in place is untouched
