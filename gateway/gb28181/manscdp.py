"""MANSCDP bodies (GB/T 28181 annex A): XML in the platform's charset.

Parsed with defusedxml (no entities, no DTDs, no external references); bodies larger
than :data:`MAX_BODY` or not decodable in the configured charset are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

MAX_BODY = 32_768
CONTENT_TYPE = "Application/MANSCDP+xml"
_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>", re.S)
_XML_NAMES = {"gb2312": "GB2312", "gb18030": "GB18030", "utf-8": "UTF-8"}


class ManscdpError(ValueError):
    """A body we refuse; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Query:
    root: str  # Query, Notify, Control, Response
    cmd: str  # Catalog, DeviceInfo, Keepalive …
    sn: str
    device_id: str
    xml: Element


def parse(body: bytes, charset: str) -> Query:
    """Parse a MANSCDP body; the declared encoding wins, else ``charset``, else GB18030."""
    if len(body) > MAX_BODY:
        raise ManscdpError(f"body of {len(body)} bytes is larger than {MAX_BODY}")
    if not body.strip():
        raise ManscdpError("empty body")
    text = _decode(body, charset)
    try:
        root = DET.fromstring(text)
    except DefusedXmlException as err:
        raise ManscdpError(f"forbidden XML construct: {type(err).__name__}") from None
    except Exception as err:  # ParseError and friends
        raise ManscdpError(f"not well-formed XML: {str(err)[:80]}") from None
    cmd = (root.findtext("CmdType") or "").strip()
    if not cmd:
        raise ManscdpError(f"<{root.tag[:32]}> without CmdType")
    sn = (root.findtext("SN") or "").strip()
    if not (sn.isascii() and sn.isdigit()) or len(sn) > 20:
        raise ManscdpError(f"bad SN {sn[:24]!r}")
    return Query(
        root=root.tag[:32],
        cmd=cmd[:64],
        sn=sn,
        device_id=(root.findtext("DeviceID") or "").strip()[:32],
        xml=root,
    )


def _decode(body: bytes, charset: str) -> str:
    declared = re.search(rb"encoding\s*=\s*[\"']([A-Za-z0-9_\-]{1,20})[\"']", body[:200])
    names = [declared.group(1).decode("ascii").lower()] if declared else []
    names += [charset, "gb18030"]
    # GB2312 is a subset of GB18030; platforms that say GB2312 often send GBK characters.
    names = ["gb18030" if n in ("gb2312", "gbk") else n for n in names]
    for name in names:
        try:
            text = body.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        # ElementTree refuses a str that still declares an encoding.
        return _DECL.sub(b"", text.encode("utf-8")).decode("utf-8")
    raise ManscdpError(f"body is not valid {charset}")


def _esc(value: str) -> str:
    return (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def render(root: str, fields: list[tuple[str, object]], charset: str) -> bytes:
    """``<root>`` with ``fields`` (a value that is a list of field lists becomes items)."""
    out = [f'<?xml version="1.0" encoding="{_XML_NAMES[charset]}"?>', f"<{root}>"]
    _fields(out, fields, 1)
    out.append(f"</{root}>")
    return ("\r\n".join(out) + "\r\n").encode(_codec(charset), errors="replace")


def _codec(charset: str) -> str:
    return "gb18030" if charset == "gb2312" else charset  # GBK characters survive


def _fields(out: list[str], fields: list[tuple[str, object]], depth: int) -> None:
    pad = "  " * depth
    for name, value in fields:
        if isinstance(value, list):
            if name.endswith("List") or name == "Alarmstatus":
                out.append(f'{pad}<{name} Num="{len(value)}">')
                for item in value:
                    out.append(f"{pad}  <Item>")
                    _fields(out, item, depth + 2)
                    out.append(f"{pad}  </Item>")
            else:
                out.append(f"{pad}<{name}>")
                _fields(out, value, depth + 1)
            out.append(f"{pad}</{name}>")
        else:
            out.append(f"{pad}<{name}>{_esc(str(value))}</{name}>")
