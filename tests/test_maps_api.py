"""E-maps (电子地图) through the HTTP API: upload, pins, scope, bad input, audit, coordinates.

One gateway in process behind the real FastAPI app (the cascade and the body bound on a
real socket are ``test_maps_cascade``'s). A map is a checked PNG/JPEG/SVG; a file that
is not an image, a damaged one, a hostile SVG, pins naming cameras that do not exist or
lie outside the operator's area are refused with a message that says why, and nothing
of the request is kept; every change is in the audit log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from gateway.api.server import create_app
from gateway.app import Gateway
from gateway.config import Settings

PW = "map-password-1"
CAMS = [
    {"id": "cam-01", "name": "村口", "rtsp_url": "rtsp://127.0.0.1:9/none"},
    {"id": "cam-02", "name": "学校门口", "rtsp_url": "rtsp://127.0.0.1:9/none"},
]


def png(width: int = 320, height: int = 200) -> bytes:
    img = np.full((height, width, 3), 200, np.uint8)
    cv2.rectangle(img, (20, 20), (width - 20, height - 20), (40, 120, 40), 3)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((90, 160, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 800 600">'
    b'<rect width="800" height="600" fill="#eef"/><path d="M0 300 H800" stroke="#999"/></svg>'
)
HOSTILE_SVGS = {
    "script": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(1)</script></svg>",
    "handler": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="x()"/>',
    "external": b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
    b' width="10" height="10"><image xlink:href="http://203.0.113.9/a.png"/></svg>',
    "entity": b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&x;</text></svg>',
    "foreign": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><foreignObject>'
    b'<iframe xmlns="http://www.w3.org/1999/xhtml" src="https://203.0.113.9"/></foreignObject></svg>',
    "css": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<style>@import url("http://203.0.113.9/x.css");</style></svg>',
}


ROLES = {"op": ("operator", ""), "v1": ("viewer", ""), "east": ("operator", "cam-02")}


class Users(dict[str, dict[str, str]]):
    """Bearer headers per user, the user made on first use (password hashing is slow)."""

    def __init__(self, gw: Gateway) -> None:
        super().__init__()
        self.gw = gw

    def __missing__(self, user: str) -> dict[str, str]:
        role, scope = ROLES[user]
        self.gw.auth.create_user(user, PW, role, scope=scope)
        token = self.gw.auth.issue(user, "session", ttl=600).token
        self[user] = {"Authorization": f"Bearer {token}"}
        return self[user]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.model_validate({"data_dir": str(tmp_path / "data"), "cameras": CAMS})
    gw = Gateway(settings)
    app = create_app(gw, manage_lifecycle=False)
    await gw.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    try:
        yield {"http": http, "as": Users(gw), "gw": gw, "dir": tmp_path / "data" / "maps"}
    finally:
        await gw.stop()
        await http.aclose()


async def test_upload_place_pins_and_read_back(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    who = api["as"]
    r = await http.get("/api/v1/maps", headers=who["op"])
    assert r.status_code == 404 and "尚未上传" in r.json()["detail"]
    r = await http.put("/api/v1/maps/image", content=png(), headers=who["v1"])
    assert r.status_code == 403  # viewers look, operators draw
    r = await http.put("/api/v1/maps/image", content=png(), headers=who["op"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["kind"], doc["width"], doc["height"]) == ("png", 320, 200)
    assert doc["pins"] == [] and doc["editable"] is True and "file" not in doc
    layout = {
        "pins": [
            {"camera": "cam-01", "x": 0.25, "y": 0.5},
            {"camera": "cam-02", "x": 0.7, "y": 0.3},
        ]
    }
    r = await http.put("/api/v1/maps/layout", json=layout, headers=who["op"])
    assert r.status_code == 200, r.text
    r = await http.get("/api/v1/maps", headers=who["v1"])
    assert r.status_code == 200
    pins = {p["camera"]: p for p in r.json()["pins"]}
    assert pins["cam-01"]["x"] == 0.25 and pins["cam-01"]["name"] == "村口"
    assert pins["cam-02"]["status"] in ("online", "offline", "unknown", "error")
    assert r.json()["editable"] is False  # a viewer's page offers no editing
    img = await http.get(r.json()["image_url"], headers=who["v1"])
    assert img.status_code == 200 and img.content == png()
    assert img.headers["content-type"] == "image/png"
    assert "default-src 'none'" in img.headers["content-security-policy"]
    assert img.headers["x-content-type-options"] == "nosniff"
    # A new image keeps the pins; the old file is gone from the data dir.
    r = await http.put("/api/v1/maps/image", content=SVG, headers=who["op"])
    assert r.status_code == 200, r.text
    assert (r.json()["kind"], r.json()["width"], r.json()["height"]) == ("svg", 800, 600)
    assert len(r.json()["pins"]) == 2
    assert [p.suffix for p in api["dir"].iterdir()] == [".svg"]
    img = await http.get("/api/v1/maps/image", headers=who["op"])
    assert img.headers["content-type"] == "image/svg+xml" and img.content == SVG
    assert "sandbox" in img.headers["content-security-policy"]
    r = await http.put("/api/v1/maps/image", content=jpeg(), headers=who["op"])
    assert r.status_code == 200 and r.json()["kind"] == "jpeg"


async def test_hostile_svgs_are_refused_and_the_old_map_stays(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    op = api["as"]["op"]
    assert (await http.put("/api/v1/maps/image", content=png(), headers=op)).status_code == 200
    for kind, body in HOSTILE_SVGS.items():
        r = await http.put("/api/v1/maps/image", content=body, headers=op)
        assert r.status_code == 422, (kind, r.text)
        assert "SVG" in r.json()["detail"], (kind, r.json())
    doc = (await http.get("/api/v1/maps", headers=op)).json()
    assert doc["kind"] == "png"  # the previous map, whole
    assert len(list(api["dir"].iterdir())) == 1


async def test_files_that_are_not_images_are_refused(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    op = api["as"]["op"]
    cases = {
        "text": (b"hello, this is not a map", "不是 PNG"),
        "empty": (b"", "为空"),
        "truncated png": (png()[:200], "损坏"),
        "png header only": (png()[:33] + b"\0" * 64, "损坏"),
        "jpeg magic, then junk": (b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x17" * 500, "JPEG"),
        "exe": (b"MZ\x90\x00" + b"\0" * 400, "不是 PNG"),
        "xml, not svg": (b'<?xml version="1.0"?><html><body/></html>', "SVG"),
        "unknown encoding": (b'<?xml version="1.0" encoding="foo"?><svg/>', "SVG"),
        "huge viewBox": (b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1e999 1"/>', "SVG"),
    }
    for name, (body, words) in cases.items():
        r = await http.put("/api/v1/maps/image", content=body, headers=op)
        assert r.status_code == 422, (name, r.text)
        assert words in r.json()["detail"], (name, r.json())
    assert (await http.get("/api/v1/maps", headers=op)).status_code == 404  # nothing half made
    assert not api["dir"].exists() or not list(api["dir"].iterdir())
    # A "bomb": a valid header announcing 100000 x 100000 pixels is refused before decoding.
    bomb = bytearray(png())
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2
    r = await http.put("/api/v1/maps/image", content=bytes(bomb), headers=op)
    assert r.status_code == 422 and "像素过多" in r.json()["detail"]


async def test_pins_outside_the_area_or_unknown_are_refused_whole(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    who = api["as"]
    r = await http.put("/api/v1/maps/layout", json={"pins": []}, headers=who["op"])
    assert r.status_code == 409 and "先上传" in r.json()["detail"]
    assert (
        await http.put("/api/v1/maps/image", content=png(), headers=who["op"])
    ).status_code == 200
    first = {"pins": [{"camera": "cam-01", "x": 0.1, "y": 0.1}]}
    assert (await http.put("/api/v1/maps/layout", json=first, headers=who["op"])).status_code == 200
    # The operator of cam-02 only: a pin on cam-01 is refused, and nothing changes.
    bad = {
        "pins": [{"camera": "cam-02", "x": 0.5, "y": 0.5}, {"camera": "cam-01", "x": 0.9, "y": 0.9}]
    }
    r = await http.put("/api/v1/maps/layout", json=bad, headers=who["east"])
    assert (
        r.status_code == 403 and "cam-01" in r.json()["detail"] and "管辖范围" in r.json()["detail"]
    )
    # ... nor may they replace the image of the whole gateway.
    r = await http.put("/api/v1/maps/image", content=png(64, 64), headers=who["east"])
    assert r.status_code == 403
    # Their own camera is placed; the pin they cannot see stays where it was.
    own = {"pins": [{"camera": "cam-02", "x": 0.5, "y": 0.5}]}
    r = await http.put("/api/v1/maps/layout", json=own, headers=who["east"])
    assert r.status_code == 200, r.text
    assert [p["camera"] for p in r.json()["pins"]] == ["cam-02"]  # what they may see
    full = (await http.get("/api/v1/maps", headers=who["op"])).json()
    assert {p["camera"]: (p["x"], p["y"]) for p in full["pins"]} == {
        "cam-01": (0.1, 0.1),
        "cam-02": (0.5, 0.5),
    }
    for body, status, words in [
        ({"pins": [{"camera": "cam-99", "x": 0.1, "y": 0.1}]}, 422, "未知摄像机"),
        ({"pins": [{"camera": "cam-01", "x": 1.5, "y": 0.1}]}, 422, "请求无效"),
        ({"pins": [{"camera": "cam-01", "x": 0.1, "y": 0.1}] * 2}, 422, "重复"),
        ({"areas": [{"node": "village-9", "x": 0.1, "y": 0.1}]}, 422, "未知下级节点"),
        ({"pins": [{"camera": "../etc", "x": 0.1, "y": 0.1}]}, 422, "请求无效"),
    ]:
        r = await http.put("/api/v1/maps/layout", json=body, headers=who["op"])
        assert r.status_code == status, (body, r.text)
        assert words in r.text, (body, r.text)
    after = (await http.get("/api/v1/maps", headers=who["op"])).json()
    assert after["pins"] == full["pins"]
    # A child's map is changed on the child's gateway, not here.
    r = await http.put(
        "/api/v1/maps/layout", params={"node": "village-1"}, json=own, headers=who["op"]
    )
    assert r.status_code == 409
    r = await http.get("/api/v1/maps", params={"node": "village-1"}, headers=who["op"])
    assert r.status_code == 404 and "下级" in r.json()["detail"]


async def test_changes_are_audited_and_coordinates_show_in_the_camera_api(
    api: dict[str, Any],
) -> None:
    http: httpx.AsyncClient = api["http"]
    who = api["as"]
    assert (
        await http.put("/api/v1/maps/image", content=png(), headers=who["op"])
    ).status_code == 200
    assert (
        await http.put("/api/v1/maps/image", content=b"junk", headers=who["op"])
    ).status_code == 422
    layout = {"pins": [{"camera": "cam-01", "x": 0.3, "y": 0.3}]}
    assert (
        await http.put("/api/v1/maps/layout", json=layout, headers=who["op"])
    ).status_code == 200
    r = await http.put(
        "/api/v1/maps/geo/cam-01",
        json={"latitude": 30.2741, "longitude": 120.1551},
        headers=who["op"],
    )
    assert r.status_code == 200, r.text
    r = await http.put(
        "/api/v1/maps/geo/cam-01", json={"latitude": 91, "longitude": 0}, headers=who["op"]
    )
    assert r.status_code == 422
    r = await http.put("/api/v1/maps/geo/cam-01", json={"latitude": 30.0}, headers=who["op"])
    assert r.status_code == 422 and "经纬度" in r.text
    r = await http.put(
        "/api/v1/maps/geo/cam-99", json={"latitude": 1, "longitude": 1}, headers=who["op"]
    )
    assert r.status_code == 404
    cam = (await http.get("/api/v1/cameras/cam-01", headers=who["v1"])).json()
    assert (cam["latitude"], cam["longitude"]) == (30.2741, 120.1551)
    other = (await http.get("/api/v1/cameras/cam-02", headers=who["v1"])).json()
    assert other["latitude"] is None and other["longitude"] is None
    pin = (await http.get("/api/v1/maps", headers=who["v1"])).json()["pins"][0]
    assert (pin["latitude"], pin["longitude"]) == (30.2741, 120.1551)
    assert (await http.delete("/api/v1/maps", headers=who["op"])).status_code == 204
    assert (await http.get("/api/v1/maps", headers=who["op"])).status_code == 404
    assert not list(api["dir"].iterdir())
    entries = (
        await http.get("/api/v1/audit", params={"action": "map_change"}, headers=who["op"])
    ).json()
    rows = entries if isinstance(entries, list) else entries.get("entries", entries.get("items"))
    ops = sorted((e["detail"].get("op"), e["ok"]) for e in rows)
    assert ops == sorted(
        [("image", True), ("image", False), ("layout", True), ("geo", True), ("delete", True)]
    ), ops
    assert all(e["user"] == "op" for e in rows)
