"""``/api/v1/maps``: e-maps (电子地图) of this gateway's node and, read-only, of nodes below.

``?node=`` names the node as this gateway sees it: empty for this gateway itself,
``village-1`` or ``town-a/village-1`` for a node below (fetched through the cascade).
A map is changed on the gateway of its own node, by an operator; an image upload by
an operator of the whole gateway only. Pins name cameras of the tree within the
caller's subtree, areas name nodes below; anything else is refused and nothing of the
request is kept. Every change is in the audit log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.cascade.access import AccessError
from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.cascade.tree import build as build_tree
from gateway.maps.image import BadImage
from gateway.maps.model import PATH, GeoIn, Layout
from gateway.maps.service import MAX_IMAGE_BYTES

router = APIRouter(prefix="/api/v1/maps", tags=["maps"])
NodeQ = Query(
    "", max_length=640, pattern=rf"^(|{PATH[1:-1]})$", description="Node path; empty = this gateway"
)
# An SVG map is shown as an image, never as a document: nothing in it may run or load.
IMAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def _may_read(caller: Caller, node: str) -> None:
    """A node in the caller's subtree, or above it on the way down to it."""
    scope = caller.scope.strip("/")
    if node and not (caller.sees(node) or scope.startswith(node + "/")):
        raise HTTPException(404, f"no map for {node!r} / 该节点无地图")


def _may_change(caller: Caller, node: str, whole: bool = False) -> None:
    if node:
        raise HTTPException(
            409,
            f"the map of {node!r} is kept by that node's gateway: change it there"
            " / 下级节点的地图请在该节点网关上修改",
        )
    if whole and caller.scope:
        raise HTTPException(
            403, "only operators of the whole gateway change its map image / 仅全域操作员可更换底图"
        )


def _index(node: GatewayNode, cams: dict[str, CameraNode], nodes: dict[str, GatewayNode]) -> None:
    nodes[node.path] = node
    for cam in node.cameras:
        cams[cam.path] = cam
    for child in node.children:
        _index(child, cams, nodes)


def _counts(node: GatewayNode) -> tuple[int, int]:
    total = len(node.cameras)
    online = sum(1 for c in node.cameras if c.status == "online")
    for child in node.children:
        t, o = _counts(child)
        total, online = total + t, online + o
    return total, online


def _present(gw: Gateway, found: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """The map as the caller may see it, each pin and area with its name and status."""
    cams: dict[str, CameraNode] = {}
    nodes: dict[str, GatewayNode] = {}
    _index(build_tree(gw), cams, nodes)
    pins = []
    for pin in found.get("pins", []):
        path = str(pin.get("camera", ""))
        if not caller.sees(path):
            continue
        cam = cams.get(path)
        pins.append(
            {
                **pin,
                "name": cam.name if cam else path.rpartition("/")[2],
                "status": cam.status if cam else "unknown",
                "ptz": bool(cam.ptz) if cam else False,
                "location": cam.location if cam else "",
            }
        )
    areas = []
    scope = caller.scope.strip("/")
    for area in found.get("areas", []):
        path = str(area.get("node", ""))
        if not (caller.sees(path) or scope.startswith(path + "/")):
            continue
        sub = nodes.get(path)
        total, online = _counts(sub) if sub else (0, 0)
        areas.append(
            {
                **area,
                "name": (sub.name or sub.id) if sub else path.rpartition("/")[2],
                "level": sub.level if sub else "",
                "status": sub.status if sub else "unknown",
                "cameras_total": total,
                "cameras_online": online,
            }
        )
    out = {k: v for k, v in found.items() if k != "file"}
    node = str(found.get("node", ""))
    return {
        **out,
        "pins": pins,
        "areas": areas,
        "image_url": f"/api/v1/maps/image?node={node}&v={str(found.get('sha256', ''))[:16]}",
        "editable": not node and caller.allows("operator"),
    }


def _http(err: AccessError) -> HTTPException:
    return HTTPException(err.status, str(err))


@router.get("")
async def get_map(
    node: str = NodeQ,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> dict[str, Any]:
    """The map of a node with its pins (cameras) and areas (nodes below)."""
    _may_read(caller, node)
    try:
        found = await gw.maps.document(node)
    except AccessError as err:
        raise _http(err) from None
    if found is None:
        raise HTTPException(404, f"no map for {node or 'this gateway'!r} yet / 该节点尚未上传地图")
    return _present(gw, found, caller)


@router.get("/image", response_class=Response)
async def get_image(
    node: str = NodeQ,
    v: str = Query("", max_length=64, description="The image's hash prefix, for caching"),
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("viewer")),
) -> Response:
    """The map image, served as an image (a strict CSP, never as a page)."""
    _may_read(caller, node)
    try:
        found = await gw.maps.image(node)
    except AccessError as err:
        raise _http(err) from None
    if found is None:
        raise HTTPException(404, f"no map for {node or 'this gateway'!r} yet / 该节点尚未上传地图")
    body, content_type, sha = found
    cache = "private, max-age=86400, immutable" if v and sha.startswith(v) else "no-cache"
    headers = {
        "Content-Security-Policy": IMAGE_CSP,
        "Cache-Control": cache,
        "ETag": f'"{sha[:32]}"',
        "Content-Disposition": 'inline; filename="map"',
    }
    return Response(body, media_type=content_type, headers=headers)


async def _read_bounded(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes the bound."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
        raise HTTPException(413, _too_big())
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise HTTPException(413, _too_big())
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big() -> str:
    mb = MAX_IMAGE_BYTES // (1024 * 1024)
    return f"map image larger than {mb} MB / 地图图片超过 {mb} MB"


@router.put("/image")
async def put_image(
    request: Request,
    node: str = NodeQ,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Upload the map image as the request body (PNG, JPEG or SVG, at most 20 MB)."""
    _may_change(caller, node, whole=True)
    data = await _read_bounded(request)
    maps = gw.maps
    try:
        found = await maps.save_image(data, caller.name, node)
    except BadImage as err:
        note(gw, caller, "map_change", request, ok=False, op="image", error=str(err)[:120])
        raise HTTPException(422, str(err)) from None
    note(gw, caller, "map_change", request, op="image", kind=found["kind"], bytes=len(data))
    return _present(gw, found, caller)


def _check_layout(gw: Gateway, caller: Caller, layout: Layout) -> None:
    cams: dict[str, CameraNode] = {}
    nodes: dict[str, GatewayNode] = {}
    _index(build_tree(gw), cams, nodes)
    for pin in layout.pins:
        if not caller.sees(pin.camera):
            raise HTTPException(
                403,
                f"camera {pin.camera!r} is outside your area / 摄像机 {pin.camera} 超出管辖范围",
            )
        if pin.camera not in cams:
            raise HTTPException(422, f"unknown camera {pin.camera!r} / 未知摄像机 {pin.camera}")
    for area in layout.areas:
        if not caller.sees(area.node):
            raise HTTPException(
                403, f"node {area.node!r} is outside your area / 节点 {area.node} 超出管辖范围"
            )
        if area.node not in nodes:
            raise HTTPException(422, f"unknown node {area.node!r} / 未知下级节点 {area.node}")


@router.put("/layout")
async def put_layout(
    layout: Layout,
    request: Request,
    node: str = NodeQ,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Replace the pins and areas the caller sees (those outside the caller's area stay)."""
    _may_change(caller, node)
    _check_layout(gw, caller, layout)
    maps = gw.maps
    current = maps.local(node)
    if current is None:
        raise HTTPException(409, "upload a map image first / 请先上传地图底图")
    kept = Layout.model_validate(
        {
            "pins": [p for p in current["pins"] if not caller.sees(p["camera"])] + layout.pins,
            "areas": [a for a in current["areas"] if not caller.sees(a["node"])] + layout.areas,
        }
    )
    found = maps.save_layout(kept, caller.name, node)
    if found is None:  # deleted meanwhile
        raise HTTPException(409, "upload a map image first / 请先上传地图底图")
    note(gw, caller, "map_change", request, op="layout", pins=len(kept.pins), areas=len(kept.areas))
    return _present(gw, found, caller)


@router.delete("", status_code=204)
def delete_map(
    request: Request,
    node: str = NodeQ,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> None:
    _may_change(caller, node, whole=True)
    if not gw.maps.delete(node):
        raise HTTPException(404, "no map for this gateway yet / 该节点尚未上传地图")
    note(gw, caller, "map_change", request, op="delete")


@router.put("/geo/{camera_id}")
def put_geo(
    camera_id: str,
    body: GeoIn,
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("operator")),
) -> dict[str, Any]:
    """Set (or clear, with nulls) the latitude/longitude of one of this gateway's cameras."""
    registry = gw.registry
    if registry is None or registry.get(camera_id) is None or not caller.sees(camera_id):
        raise HTTPException(404, f"unknown camera {camera_id!r} / 未知摄像机")
    both = None if body.latitude is None else (body.latitude, body.longitude or 0.0)
    gw.maps.set_geo(camera_id, both)
    note(gw, caller, "map_change", request, camera=camera_id, op="geo")
    return {"camera": camera_id, "latitude": body.latitude, "longitude": body.longitude}
