"""The messages on the child→parent WebSocket (级联协议).

Text frames carry JSON messages, each with a ``type``, an ``id`` and a protocol
version ``v``. Binary frames carry bytes: media access units of an open stream
(kind ``M``) and chunks of a response body such as a snapshot or a clip (kind
``D``), each behind a fixed header.

Everything that arrives is validated strictly before use: a parent must not trust
its children (nor a child its parent). Unknown types, extra fields, oversized
messages, bad ids and paths are rejected with a :class:`ProtocolError` that says
why; the receiver logs it and drops the message.

Paths: a child sends every path (camera, node, event camera) prefixed by its own
id, i.e. relative to the parent. The parent checks that prefix against the id the
child's token was issued for.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from gateway.config import ID_PATTERN
from gateway.events.model import Event
from gateway.media.access_unit import AccessUnit

VERSION = 1
MAX_TEXT_BYTES = 4 * 1024 * 1024
MAX_BINARY_BYTES = 8 * 1024 * 1024
MAX_TREE_DEPTH = 8
MAX_TREE_CAMERAS = 20_000
MAX_EVENTS_PER_MESSAGE = 200

# A path is 1..MAX_TREE_DEPTH+1 ids joined by "/".
PATH_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62}){0,9}$"
Path_ = Annotated[str, Field(pattern=PATH_PATTERN, max_length=640)]
Id = Annotated[str, Field(pattern=ID_PATTERN)]
Status = Literal["online", "offline", "unauthorised", "error", "unknown"]
Text = Annotated[str, Field(max_length=512)]


class ProtocolError(ValueError):
    """A message that breaks the protocol; the text says why (safe to log)."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = Field(VERSION, ge=1, le=VERSION)
    id: Annotated[str, Field(max_length=64)] = ""


# -- catalog -----------------------------------------------------------------------


class CameraNode(BaseModel):
    """One camera as the tree shows it."""

    model_config = ConfigDict(extra="forbid")
    id: Id
    path: Path_
    name: Text = ""
    status: Status = "unknown"
    location: Text = ""
    division: Text = ""
    codec: Annotated[str, Field(max_length=32)] | None = None
    ptz: bool = False


class GatewayNode(BaseModel):
    """A gateway, its cameras and its children, recursively."""

    model_config = ConfigDict(extra="forbid")
    id: Id
    path: Annotated[str, Field(max_length=640)] = ""
    name: Text = ""
    level: Annotated[str, Field(max_length=32)] = ""
    status: Status = "unknown"
    cameras: list[CameraNode] = Field(default_factory=list, max_length=MAX_TREE_CAMERAS)
    children: list[GatewayNode] = Field(default_factory=list, max_length=1000)


def check_tree(node: GatewayNode, prefix: str, depth: int = 0) -> int:
    """Check that every path in ``node`` lies under ``prefix``; return the camera count.

    ``prefix`` is the node's own path: its cameras must be ``prefix/<camera id>`` and
    its children ``prefix/<child id>``.
    """
    if depth > MAX_TREE_DEPTH:
        raise ProtocolError(f"tree deeper than {MAX_TREE_DEPTH} levels")
    if node.path != prefix:
        raise ProtocolError(f"node path {node.path!r} is not {prefix!r}")
    if prefix.rsplit("/", 1)[-1] != node.id:
        raise ProtocolError(f"node id {node.id!r} does not end its path {prefix!r}")
    count = 0
    for cam in node.cameras:
        if cam.path != f"{prefix}/{cam.id}":
            raise ProtocolError(f"camera path {cam.path!r} is outside {prefix!r}")
        count += 1
    for child in node.children:
        count += check_tree(child, f"{prefix}/{child.id}", depth + 1)
    if count > MAX_TREE_CAMERAS:
        raise ProtocolError(f"tree has more than {MAX_TREE_CAMERAS} cameras")
    return count


def offline(node: GatewayNode) -> GatewayNode:
    """A copy of ``node`` with the gateway, its cameras and its children all offline."""
    return node.model_copy(
        update={
            "status": "offline",
            "cameras": [c.model_copy(update={"status": "offline"}) for c in node.cameras],
            "children": [offline(c) for c in node.children],
        }
    )


# -- child → parent ------------------------------------------------------------------


class Hello(_Msg):
    type: Literal["hello"]
    gateway: Id
    level: Annotated[str, Field(max_length=32)] = ""
    name: Text = ""
    outbox_epoch: Annotated[str, Field(max_length=64)] = ""
    software: Annotated[str, Field(max_length=64)] = ""


class Catalog(_Msg):
    type: Literal["catalog"]
    tree: GatewayNode


class CameraDelta(_Msg):
    """One camera changed (status, name …) somewhere in the child's subtree."""

    type: Literal["camera"]
    camera: CameraNode


class NodeDelta(_Msg):
    """A whole node of the child's subtree replaced (a grandchild joined, left, changed)."""

    type: Literal["node"]
    node: GatewayNode


class Heartbeat(_Msg):
    type: Literal["heartbeat"]
    time: float = 0.0


class OutboxItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int = Field(ge=1)
    event: Event


class Events(_Msg):
    type: Literal["events"]
    items: list[OutboxItem] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)


class Response(_Msg):
    """The answer to a request, by request id; body chunks (if any) came before it."""

    type: Literal["response"]
    ok: bool
    status: int = Field(200, ge=100, le=599)
    error: Text = ""
    data: dict[str, Any] = Field(default_factory=dict)


class StreamInfoMsg(_Msg):
    """Codec facts of an open stream (sent before its first access unit, and on change)."""

    type: Literal["stream_info"]
    channel: int = Field(ge=1, le=2**31)
    codec: Annotated[str, Field(max_length=32)]
    width: int = Field(0, ge=0, le=16384)
    height: int = Field(0, ge=0, le=16384)
    fps: float = Field(0.0, ge=0, le=1000)
    profile: Annotated[str, Field(max_length=64)] | None = None
    has_b_frames: bool = False
    gop: int | None = Field(None, ge=0, le=100000)
    extradata: Annotated[str, Field(max_length=8192)] = ""  # hex
    bitrate_bps: float = Field(0.0, ge=0)


class StreamEnd(_Msg):
    """The child ended an open stream (camera gone, ingest failed)."""

    type: Literal["stream_end"]
    channel: int = Field(ge=1, le=2**31)
    reason: Text = ""


ChildMessage = Annotated[
    Hello
    | Catalog
    | CameraDelta
    | NodeDelta
    | Heartbeat
    | Events
    | Response
    | StreamInfoMsg
    | StreamEnd,
    Field(discriminator="type"),
]

# -- parent → child ------------------------------------------------------------------


class Welcome(_Msg):
    type: Literal["welcome"]
    parent: Id
    last_seq: int = Field(0, ge=0)
    heartbeat_s: float = Field(2.0, gt=0, le=300)


class Ack(_Msg):
    type: Literal["ack"]
    seq: int = Field(ge=0)


Op = Literal[
    "open_stream",
    "close_stream",
    "snapshot",
    "ptz",
    "presets",
    "recordings",
    "clip",
    "record",
    "event_snapshot",
    "lock",
    "map",  # the e-map of a node below (gateway.maps)
    "map_image",
    "inspect",
    "inspection_snapshot",
]


class Request(_Msg):
    """A request from the parent, answered by a :class:`Response` with the same id.

    ``path`` is as the child sees it (the parent strips the child's id), except for
    ``inspect``, whose path names a gateway node and keeps the child's id in front:
    the child's own node has no shorter name (see :mod:`gateway.cascade.inspect`).
    """

    type: Literal["request"]
    op: Op
    path: Path_
    channel: int = Field(0, ge=0, le=2**31)
    params: dict[str, Any] = Field(default_factory=dict)


ParentMessage = Annotated[
    Welcome | Ack | Heartbeat | Request | Response, Field(discriminator="type")
]

_CHILD = TypeAdapter(ChildMessage)
_PARENT = TypeAdapter(ParentMessage)
_KNOWN_CHILD = {"hello", "catalog", "camera", "node", "heartbeat", "events", "response"}
_KNOWN_CHILD |= {"stream_info", "stream_end"}
_KNOWN_PARENT = {"welcome", "ack", "heartbeat", "request", "response"}


def _parse(text: str | bytes, adapter: TypeAdapter, known: set[str]) -> Any:
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError(f"message of {len(text)} bytes exceeds {MAX_TEXT_BYTES}")
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise ProtocolError(f"not JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise ProtocolError("message is not a JSON object")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in known:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    try:
        return adapter.validate_python(raw)
    except RecursionError:
        raise ProtocolError(f"invalid {kind} message: nested too deeply") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ProtocolError(f"invalid {kind} message at {where}: {first.get('msg')}") from None


def parse_child(text: str | bytes) -> Any:
    """Validate one text message from a child; raise :class:`ProtocolError`."""
    return _parse(text, _CHILD, _KNOWN_CHILD)


def parse_parent(text: str | bytes) -> Any:
    """Validate one text message from a parent; raise :class:`ProtocolError`."""
    return _parse(text, _PARENT, _KNOWN_PARENT)


def dump(msg: BaseModel) -> str:
    return msg.model_dump_json()


# -- binary frames --------------------------------------------------------------------
# kind(1) flags(1) channel(u32) pts(i64) dts(i64) tb_num(u32) tb_den(u32) wallclock(f64)
# epoch(u32), big-endian, then the payload (Annex B access unit, or a body chunk).
_HEADER = struct.Struct(">cBIqqIIdI")
HEADER_SIZE = _HEADER.size
KIND_MEDIA = b"M"
KIND_DATA = b"D"
FLAG_KEYFRAME = 1
FLAG_HAS_DTS = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded binary frame."""

    kind: bytes
    channel: int
    payload: bytes
    au: AccessUnit | None = None


def encode_media(channel: int, au: AccessUnit) -> bytes:
    flags = (FLAG_KEYFRAME if au.keyframe else 0) | (FLAG_HAS_DTS if au.dts is not None else 0)
    tb = au.time_base
    header = _HEADER.pack(
        KIND_MEDIA,
        flags,
        channel,
        au.pts,
        au.dts if au.dts is not None else 0,
        tb.numerator,
        tb.denominator,
        au.wallclock,
        au.epoch & 0xFFFFFFFF,
    )
    return header + au.data


def encode_data(channel: int, chunk: bytes) -> bytes:
    return _HEADER.pack(KIND_DATA, 0, channel, 0, 0, 1, 1, 0.0, 0) + chunk


def decode_frame(buf: bytes) -> Frame:
    """Parse one binary frame; raise :class:`ProtocolError` on anything odd."""
    if len(buf) > MAX_BINARY_BYTES + HEADER_SIZE:
        raise ProtocolError(f"binary frame of {len(buf)} bytes exceeds {MAX_BINARY_BYTES}")
    if len(buf) < HEADER_SIZE:
        raise ProtocolError(f"binary frame of {len(buf)} bytes is shorter than its header")
    kind, flags, channel, pts, dts, num, den, wallclock, epoch = _HEADER.unpack_from(buf)
    payload = bytes(buf[HEADER_SIZE:])
    if kind not in (KIND_MEDIA, KIND_DATA):
        raise ProtocolError(f"unknown binary frame kind {kind!r}")
    if channel == 0:
        raise ProtocolError("binary frame on channel 0")
    if kind == KIND_DATA:
        return Frame(kind, channel, payload)
    if num == 0 or den == 0:
        raise ProtocolError("media frame with a zero time base")
    if not payload:
        raise ProtocolError("media frame without payload")
    if wallclock != wallclock or wallclock < 0:  # NaN or negative
        raise ProtocolError("media frame with a bad wallclock")
    au = AccessUnit(
        data=payload,
        pts=pts,
        dts=dts if flags & FLAG_HAS_DTS else None,
        time_base=Fraction(num, den),
        keyframe=bool(flags & FLAG_KEYFRAME),
        wallclock=wallclock,
        epoch=epoch,
    )
    return Frame(kind, channel, payload, au)


def valid_path(path: str) -> bool:
    """Whether ``path`` is a well-formed camera or gateway path."""
    return len(path) <= 640 and re.fullmatch(PATH_PATTERN, path) is not None


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` itself or lies below it."""
    return path == prefix or path.startswith(prefix + "/")
