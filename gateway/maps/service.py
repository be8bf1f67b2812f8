"""The ``maps`` part (电子地图): this gateway's map, and its children's through the cascade.

Every gateway keeps the map of its own node (``node == ""``): the image in the data
dir's ``maps/`` folder, the pins and areas in SQLite. A parent does not copy its
children's maps: a map of a node below (``village-1``, ``village-1/...``) is asked of
the child that owns it, hop by hop (ops ``map`` and ``map_image``), the same way the
tree reaches snapshots and clips, and its paths are rebased to the asking gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from gateway.cascade.access import AccessError
from gateway.cascade.downlink import Downlink
from gateway.cascade.session import ChildGone, RemoteError
from gateway.cascade.tree import join
from gateway.maps.image import BadImage, MapImage, check
from gateway.maps.model import Layout
from gateway.store import maps as store
from gateway.store.db import Database

log = logging.getLogger(__name__)
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a scanned township map at 300 dpi fits; 200 MB does not
REMOTE_TIMEOUT_S = 30.0


class Maps:
    """Maps of one gateway (see the module docstring)."""

    def __init__(self, db: Database, folder: Path) -> None:
        self.db = db
        self.folder = folder
        # The cascade's children, which keep the maps below; the cascade is built (and
        # started) after the maps, so ``gateway.app`` hands them over with set_downlink.
        self.downlink: Downlink | None = None
        self.uploads = 0
        self.refused = 0
        store.init(db)

    def set_downlink(self, downlink: Downlink) -> None:
        self.downlink = downlink

    async def start(self) -> None:
        await asyncio.to_thread(self._tidy)

    async def stop(self) -> None:
        return None

    def _tidy(self) -> None:
        """Remove image files no map names (left by a crash between write and commit)."""
        if not self.folder.is_dir():
            return
        keep = store.files(self.db)
        for path in self.folder.iterdir():
            if path.name not in keep:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- this gateway's own map ---------------------------------------------------------
    def local(self, node: str = "") -> dict[str, Any] | None:
        return store.get(self.db, node)

    async def save_image(self, data: bytes, user: str, node: str = "") -> dict[str, Any]:
        """Check, keep and use ``data`` as the node's map; :class:`BadImage` if refused.

        The file is written under its hash and renamed into place before the database
        names it, so a failure at any step leaves the previous map whole.
        """
        try:
            image = await asyncio.to_thread(check, data)
        except BadImage:
            self.refused += 1
            raise
        sha = hashlib.sha256(data).hexdigest()
        name = f"{sha[:32]}.{image.kind}"
        await asyncio.to_thread(self._write, name, data)
        size = (image.width, image.height)
        old = await asyncio.to_thread(
            store.put_image, self.db, node, name, image.kind, size, len(data), sha, user
        )
        if old:
            with contextlib.suppress(OSError):
                (self.folder / old).unlink()
        self.uploads += 1
        log.info("map of %r: %s %dx%d (%d bytes) by %s", node, image.kind, image.width,
                 image.height, len(data), user)  # fmt: skip
        found = await asyncio.to_thread(store.get, self.db, node)
        assert found is not None
        return found

    def _write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{name}.part"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / name)

    def save_layout(self, layout: Layout, user: str, node: str = "") -> dict[str, Any] | None:
        """Replace the pins and areas; None when the node has no map yet."""
        if not store.put_body(self.db, node, layout.model_dump(mode="json"), user):
            return None
        return store.get(self.db, node)

    def delete(self, node: str = "") -> bool:
        name = store.delete(self.db, node)
        if name:
            with contextlib.suppress(OSError):
                (self.folder / name).unlink()
        return name is not None

    def read_image(self, node: str = "") -> tuple[bytes, str, str] | None:
        """(bytes, content type, sha256) of the node's image, None without a map."""
        found = store.get(self.db, node)
        if found is None:
            return None
        data = (self.folder / found["file"]).read_bytes()
        return data, MapImage(found["kind"], 1, 1).content_type, found["sha256"]

    # -- camera coordinates -------------------------------------------------------------
    def geo(self) -> dict[str, tuple[float, float]]:
        return store.geo_all(self.db)

    def geo_of(self, camera: str) -> tuple[float, float] | None:
        return store.geo_one(self.db, camera)

    def set_geo(self, camera: str, lat_lon: tuple[float, float] | None) -> None:
        store.geo_set(self.db, camera, lat_lon)

    # -- any node of the tree -----------------------------------------------------------
    async def document(self, node: str) -> dict[str, Any] | None:
        """The map of ``node`` (paths as this gateway sees them), None if it has none."""
        if not node:
            found = await asyncio.to_thread(self.local)
            if found is not None:
                geo = await asyncio.to_thread(self.geo)
                for pin in found["pins"]:
                    if pin["camera"] in geo:
                        pin["latitude"], pin["longitude"] = geo[pin["camera"]]
            return found
        data, _ = await self._remote(node, "map")
        found = data.get("map")
        # The child wrote its paths as it sees them: only its own name goes in front.
        return _rebase(found, node.partition("/")[0], node) if found else None

    async def image(self, node: str) -> tuple[bytes, str, str] | None:
        if not node:
            return await asyncio.to_thread(self.read_image)
        data, body = await self._remote(node, "map_image")
        if not data.get("found"):
            return None
        content_type = str(data.get("content_type", ""))
        if content_type not in ("image/png", "image/jpeg", "image/svg+xml"):
            raise AccessError(502, f"child sent a map image of type {content_type[:40]!r}")
        return body, content_type, str(data.get("sha256", ""))[:64]

    async def _remote(self, node: str, op: str) -> tuple[dict[str, Any], bytes]:
        down = self.downlink
        name, _, rest = node.partition("/")
        if down is None or name not in down.links:
            raise AccessError(404, f"no child gateway {name!r} / 未知下级平台")
        try:
            session, _ = down.route(node)
            ch = session.open_channel()
            try:
                resp = await session.request(
                    op, name, {"node": rest}, channel=ch, timeout=REMOTE_TIMEOUT_S
                )
                if not resp.ok:
                    raise RemoteError(resp.status, resp.error)
                body = ch.drain()
            finally:
                session.channels.pop(ch.number, None)
        except (ChildGone, ConnectionError) as err:
            raise AccessError(503, f"child gateway {name} is offline / 下级平台离线") from err
        except RemoteError as err:
            raise AccessError(err.status, str(err)) from None
        if len(body) > MAX_IMAGE_BYTES:
            raise AccessError(502, f"the map image of {node} is larger than allowed")
        return dict(resp.data), body

    async def answer(self, op: str, params: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
        """The parent asks for a map of ours or below (cascade ops ``map``, ``map_image``)."""
        node = str(params.get("node", ""))[:640]
        if op == "map":
            return {"map": _public(await self.document(node))}, None
        found = await self.image(node)
        if found is None:
            return {"found": False}, None
        body, content_type, sha = found
        return {"found": True, "content_type": content_type, "sha256": sha}, body


def _public(found: dict[str, Any] | None) -> dict[str, Any] | None:
    """What leaves the gateway: not the file name on its disk."""
    if found is None:
        return None
    return {k: v for k, v in found.items() if k != "file"}


def _rebase(found: dict[str, Any], prefix: str, node: str) -> dict[str, Any]:
    """A child's map (of ``node``) with the child's paths put under ``prefix``."""
    pins = [{**p, "camera": join(prefix, str(p.get("camera", "")))} for p in found.get("pins", [])]
    areas = [{**a, "node": join(prefix, str(a.get("node", "")))} for a in found.get("areas", [])]
    return {**found, "node": node, "pins": pins, "areas": areas}
