"""The tree as GB/T 28181 catalog items: every camera (local or a child's) a channel
with a stable 20-digit id; this gateway a business group (215) and every child
gateway a virtual organisation (216) with its parent's id as ParentID, so the three
levels appear as folders in the upper platform at any depth."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.cascade.protocol import GatewayNode
from gateway.store import gb28181 as ids
from gateway.store.db import Database

CAMERA_TYPE = "132"  # network camera
GROUP_TYPE = "215"  # business group
ORG_TYPE = "216"  # virtual organisation


@dataclass(frozen=True, slots=True)
class Channel:
    gb_id: str
    name: str
    kind: str  # "camera", "group" or "org"
    parent_id: str = ""
    group_id: str = ""
    camera_path: str = ""  # camera id (local) or tree path (a child's), for the media side
    online: bool = True
    address: str = ""
    ptz: bool = False
    status: str = ""  # the tree's camera status (online, offline, error …), for catalog events

    def catalog_fields(self, civil_code: str) -> list[tuple[str, object]]:
        """The fields of this channel's catalog <Item> (GB/T 28181-2016 A.2.4.4)."""
        if self.kind == "group":
            return [("DeviceID", self.gb_id), ("Name", self.name)]
        if self.kind == "org":
            return [
                ("DeviceID", self.gb_id),
                ("Name", self.name),
                ("ParentID", self.parent_id),
                ("BusinessGroupID", self.group_id),
            ]
        return [
            ("DeviceID", self.gb_id),
            ("Name", self.name),
            ("Manufacturer", "edge-gateway"),
            ("Model", "IPC"),
            ("Owner", "0"),
            ("CivilCode", civil_code),
            ("Address", self.address or self.name),
            ("Parental", 0),
            ("ParentID", self.parent_id),
            ("BusinessGroupID", self.group_id),
            ("SafetyWay", 0),
            ("RegisterWay", 1),
            ("Secrecy", 0),
            ("Status", "ON" if self.online else "OFF"),
            ("Info", [("PTZType", 1 if self.ptz else 3)]),
        ]


class ChannelDirectory:
    """Builds the channel list from ``tree()`` with ids from the store under ``prefix``."""

    def __init__(
        self,
        db: Database,
        tree: Callable[[], GatewayNode],
        prefix: str,
        share: Sequence[str] = ("*",),
    ) -> None:
        if len(prefix) != 8 or not prefix.isdigit():
            raise ValueError(f"GB id prefix must be 8 digits, not {prefix!r}")
        ids.init(db)
        self.db = db
        self.tree = tree
        self.prefix = prefix
        self.share = tuple(share)
        self._known: dict[str, str] = {}

    def shared(self, path: str) -> bool:
        """Whether the camera at ``path`` is shared with this platform."""
        for rule in self.share:
            if rule == "*" or rule == path:
                return True
            if rule.endswith("/*") and path.startswith(rule[:-1]):
                return True
        return False

    def _id(self, key: str, type_code: str) -> str:
        found = self._known.get(key)
        if found is None:
            found = ids.gb_id(self.db, self.prefix, key, type_code)
            self._known[key] = found
        return found

    def channels(self) -> list[Channel]:
        """Folders first (a parent before its children), then cameras."""
        root = self.tree()
        folders: list[Channel] = []
        cameras: list[Channel] = []
        if not self._known:
            self._known = ids.all_ids(self.db, self.prefix)
        group_id = self._id("node:", GROUP_TYPE)
        folders.append(Channel(group_id, root.name or root.id, "group"))
        self._walk(root, group_id, group_id, folders, cameras)
        return folders + cameras

    def _walk(
        self,
        node: GatewayNode,
        node_id: str,
        group_id: str,
        folders: list[Channel],
        cameras: list[Channel],
    ) -> None:
        for cam in node.cameras:
            if not self.shared(cam.path):
                continue
            cam_id = self._id(f"camera:{cam.path}", CAMERA_TYPE)
            cameras.append(
                Channel(
                    cam_id,
                    cam.name or cam.id,
                    "camera",
                    parent_id=node_id,
                    group_id=group_id,
                    camera_path=cam.path,
                    online=cam.status == "online" and node.status != "offline",
                    address=cam.location,
                    ptz=cam.ptz,
                    status=cam.status if node.status != "offline" else "offline",
                )
            )
        for child in node.children:
            below_folders: list[Channel] = []
            below_cameras: list[Channel] = []
            child_id = self._id(f"node:{child.path}", ORG_TYPE)
            self._walk(child, child_id, group_id, below_folders, below_cameras)
            if not below_cameras:
                continue  # a folder with nothing shared in it would only reveal the tree
            name = child.name or child.id
            folders.append(Channel(child_id, name, "org", parent_id=node_id, group_id=group_id))
            folders += below_folders
            cameras += below_cameras

    def camera_for(self, gb_id: str) -> Channel | None:
        """The camera channel with ``gb_id`` in the current tree, or None."""
        for channel in self.channels():
            if channel.gb_id == gb_id and channel.kind == "camera":
                return channel
        return None
