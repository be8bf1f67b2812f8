"""The merged device tree (设备树): this gateway's cameras and every child's subtree.

Paths in a tree are relative to the gateway that builds it: at the town, its own
camera is ``cam-01`` and a village camera ``village-3/cam-01``. The uplink sends the
same tree with every path prefixed by this gateway's id, which is exactly what the
parent expects from a child.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.cameras.model import Camera
from gateway.cascade.local import Local
from gateway.cascade.protocol import CameraNode, GatewayNode

log = logging.getLogger(__name__)
_STATUSES = {"online", "offline", "unauthorised", "error"}


def join(prefix: str, rel: str) -> str:
    """``prefix/rel`` without a leading slash when ``prefix`` is empty."""
    if not prefix:
        return rel
    return f"{prefix}/{rel}" if rel else prefix


def local_cameras(here: Local, prefix: str = "") -> list[CameraNode]:
    """This gateway's own cameras from the registry (none if it is not running)."""
    registry = here.registry
    if registry is None:
        # No registry running: the static cameras of the config, status unknown.
        return [
            CameraNode(
                id=c.id,
                path=join(prefix, c.id),
                name=c.name,
                location=c.location,
                division=c.division,
            )
            for c in here.settings.cameras
            if c.enabled
        ]
    cams: list[CameraNode] = []
    for cam in registry.list():
        node = camera_node(cam, prefix)
        if node is not None:
            cams.append(node)
    return cams


def camera_node(cam: Camera, prefix: str = "") -> CameraNode | None:
    """A registry camera as a tree node; None (logged) if it cannot be shown."""
    try:
        pub = cam.public()
        status = str(pub.get("status") or "unknown")
        return CameraNode(
            id=pub["id"],
            path=join(prefix, pub["id"]),
            name=str(pub.get("name") or "")[:512],
            status=status if status in _STATUSES else "unknown",
            location=str(pub.get("location") or "")[:512],
            division=str(pub.get("division") or "")[:512],
            codec=(str(pub["codec"])[:32] if pub.get("codec") else None),
            ptz=bool(pub.get("ptz")),
        )
    except Exception as err:  # a registry entry we cannot describe must not hide the tree
        log.warning("camera %r left out of the tree: %s", cam.id, err)
        return None


def rebase(node: GatewayNode, prefix: str) -> GatewayNode:
    """A copy of ``node`` with ``prefix/`` put in front of every path."""
    return GatewayNode(
        id=node.id,
        path=join(prefix, node.path),
        name=node.name,
        level=node.level,
        status=node.status,
        cameras=[c.model_copy(update={"path": join(prefix, c.path)}) for c in node.cameras],
        children=[rebase(c, prefix) for c in node.children],
    )


def build(here: Local, prefix: str = "") -> GatewayNode:
    """The whole tree below (and including) this gateway, paths under ``prefix``."""
    settings = here.settings.cascade
    cascade = here.cascade
    children: list[GatewayNode] = []
    if cascade is not None:
        trees = cascade.downlink.child_trees()
        # no prefix: the children's trees as they are (a copy per request cost 55 ms at 2,000)
        children = [rebase(c, prefix) for c in trees] if prefix else trees
    return GatewayNode(
        id=settings.id,
        path=prefix,
        name=settings.name,
        level=settings.level,
        status="online",
        cameras=local_cameras(here, prefix),
        children=children,
    )


def find_camera(node: GatewayNode, path: str) -> CameraNode | None:
    for cam in node.cameras:
        if cam.path == path:
            return cam
    for child in node.children:
        if path.startswith(child.path + "/"):
            return find_camera(child, path)
    return None


def to_api(node: GatewayNode, sees: Any = None) -> dict[str, Any]:
    """The JSON the API returns: the node plus camera counts, filtered by ``sees(path)``."""
    cams = [c.model_dump() for c in node.cameras if sees is None or sees(c.path)]
    children = [to_api(c, sees) for c in node.children]
    children = [c for c in children if c["cameras_total"] or sees is None or sees(c["path"])]
    total = len(cams) + sum(c["cameras_total"] for c in children)
    online = sum(1 for c in cams if c["status"] == "online")
    online += sum(c["cameras_online"] for c in children)
    return {
        "id": node.id,
        "name": node.name,
        "level": node.level,
        "status": node.status,
        "path": node.path,
        "cameras_total": total,
        "cameras_online": online,
        "cameras": cams,
        "children": children,
    }
