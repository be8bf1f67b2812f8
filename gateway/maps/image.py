"""Map images (电子地图底图): PNG, JPEG or SVG, checked before anything is kept.

PNG and JPEG are recognised by their magic bytes, their size is read from the header
(a decompression bomb is refused before it is decoded) and then decoded with OpenCV,
so a file that only starts like an image is refused too. SVG is parsed with
``defusedxml`` (no DTD, no entities) and refused when it holds scripts, event handlers,
``foreignObject`` or references to anything outside the file: the page shows it as an
``<img>`` and the API serves it with a strict CSP, but an operator's map should not
carry such things at all.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

MAX_PIXELS = 60_000_000  # a 10000 x 6000 township map; more is a bomb, not a map
CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "svg": "image/svg+xml"}
SVG_NS = "{http://www.w3.org/2000/svg}"
_BANNED_TAGS = {
    "script",
    "foreignobject",
    "iframe",
    "embed",
    "object",
    "handler",
    "listener",
    "include",
}
_HREF_OK = re.compile(r"^(#[\w.-]*|data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*)$", re.I)
_URL_IN_CSS = re.compile(r"url\(\s*['\"]?\s*(?!#)[^)]*\)|@import|expression\(|javascript:", re.I)


class BadImage(ValueError):
    """Not a map image we keep; the message says why, in Chinese and English."""


@dataclass(frozen=True)
class MapImage:
    """A checked image: its kind (png, jpeg, svg) and size in pixels (SVG: its viewBox)."""

    kind: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def check(data: bytes) -> MapImage:
    """The image ``data`` holds, or :class:`BadImage` saying why it is refused."""
    try:
        return _check(data)
    except BadImage:
        raise
    except Exception as err:  # a reader's own failure on a hostile file is a refusal too
        raise BadImage(f"the image cannot be read ({type(err).__name__}) / 无法读取图片") from None


def _check(data: bytes) -> MapImage:
    if not data:
        raise BadImage("empty file / 文件为空")
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _raster("png", data, _png_size(data))
    if data.startswith(b"\xff\xd8\xff"):
        return _raster("jpeg", data, _jpeg_size(data))
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<?xml") or head.startswith(b"<svg") or head.startswith(b"<!--"):
        return _svg(data)
    raise BadImage("not a PNG, JPEG or SVG image / 不是 PNG、JPEG 或 SVG 图片")


def _raster(kind: str, data: bytes, size: tuple[int, int]) -> MapImage:
    width, height = size
    if width <= 0 or height <= 0:
        raise BadImage(f"{kind.upper()} header has no size / 图片尺寸无效")
    if width * height > MAX_PIXELS:
        raise BadImage(
            f"{width}x{height} pixels is more than {MAX_PIXELS // 1_000_000} megapixels"
            f" / 图片像素过多（{width}x{height}）"
        )
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if pixels is None or pixels.size == 0:
        raise BadImage(f"the {kind.upper()} file is damaged and cannot be decoded / 图片已损坏")
    return MapImage(kind, width, height)


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise BadImage("PNG without a header / PNG 文件头损坏")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first SOF marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    raise BadImage("JPEG without a frame header / JPEG 文件头损坏")


def _svg(data: bytes) -> MapImage:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        raise BadImage(
            "SVG with a DTD or entities is refused / SVG 含 DTD 或实体，已拒绝"
        ) from None
    except (SafeET.ParseError, LookupError, ValueError) as err:  # LookupError: encoding="foo"
        raise BadImage(f"not a well-formed SVG: {err} / SVG 格式错误") from None
    if root.tag not in (f"{SVG_NS}svg", "svg"):
        raise BadImage("the XML file is not an SVG image / 不是 SVG 图片")
    for node in root.iter():
        tag = str(node.tag).rpartition("}")[2].lower()
        if tag in _BANNED_TAGS:
            raise BadImage(f"SVG with <{tag}> is refused / SVG 含 <{tag}>，已拒绝")
        for name, value in node.attrib.items():
            attr = name.rpartition("}")[2].lower()
            if attr.startswith("on"):
                raise BadImage(f"SVG with an event handler ({attr}) is refused / SVG 含脚本属性")
            if attr in ("href", "src") and not _HREF_OK.match(value.strip()):
                raise BadImage(
                    f"SVG referring to {value[:60]!r} is refused: a map must not load"
                    " anything from elsewhere / SVG 引用外部资源，已拒绝"
                )
            if _URL_IN_CSS.search(value):
                raise BadImage(
                    "SVG style loading external resources is refused / SVG 样式引用外部资源"
                )
        if tag == "style" and _URL_IN_CSS.search(node.text or ""):
            raise BadImage("SVG style loading external resources is refused / SVG 样式引用外部资源")
    width, height = _svg_size(root.attrib)
    return MapImage("svg", width, height)


def _svg_size(attrib: dict[str, str]) -> tuple[int, int]:
    box = attrib.get("viewBox", "").replace(",", " ").split()
    if len(box) == 4:
        try:
            w, h = float(box[2]), float(box[3])
            if 0 < w < 1e6 and 0 < h < 1e6:
                return round(w), round(h)
        except ValueError:
            pass

    def number(key: str) -> int:
        match = re.match(r"\s*([0-9.]+)", attrib.get(key, ""))
        try:
            value = float(match.group(1)) if match else 0.0
            return round(value) if 0 < value < 1e6 else 0
        except ValueError:
            return 0

    w, h = number("width"), number("height")
    if w <= 0 or h <= 0:
        raise BadImage("SVG needs a viewBox or width and height / SVG 缺少 viewBox 或宽高")
    return w, h
