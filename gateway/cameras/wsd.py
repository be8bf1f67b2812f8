"""WS-Discovery messages: build Probes, parse ProbeMatches safely.

Only what an ONVIF client needs: a SOAP 1.2 ``Probe`` for one type, and a parser
for ``ProbeMatches`` that accepts the vendor variants seen in the field (SOAP 1.1
or 1.2 envelopes, the 2005/04 or the 2009/01 discovery namespace, any prefixes,
missing ``Types``, several or IPv6 ``XAddrs``, URL-encoded or raw UTF-8 scopes)
and rejects everything hostile (oversize, malformed, truncated, DTDs, entities)
with a :class:`WsdRejected` that says why. It never raises anything else.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring

from gateway.urls import with_host

MAX_MESSAGE_BYTES = 64 * 1024
MULTICAST_GROUP = "239.255.255.250"
PORT = 3702

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSA10 = "http://www.w3.org/2005/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSD11 = "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"

# The two types an ONVIF client probes for; one Probe each, because a device
# answers a Probe only when it matches every type listed in it.
PROBE_TYPES: dict[str, tuple[str, str]] = {
    "dn:NetworkVideoTransmitter": ("dn", DN),
    "tds:Device": ("tds", TDS),
}

_SCOPE_PREFIX = "onvif://www.onvif.org/"


class WsdRejected(ValueError):
    """A datagram that is not an acceptable ProbeMatches; ``str()`` is the reason."""


@dataclass
class ProbeMatch:
    """One device's answer to a Probe, with XAddrs already fixed for the sender."""

    endpoint: str
    address: str
    xaddrs: list[str]
    types: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    name: str = ""
    location: str = ""
    hardware: str = ""
    metadata_version: int | None = None
    relates_to: str = ""

    def public(self) -> dict[str, Any]:
        """The JSON shape of ``gateway discover --json`` and the discovery API."""
        return {
            "address": self.address,
            "xaddrs": list(self.xaddrs),
            "name": self.name,
            "location": self.location,
            "hardware": self.hardware,
            "endpoint": self.endpoint,
        }


def new_message_id() -> str:
    """A fresh MessageID: devices drop Probes whose id they have seen before."""
    return f"uuid:{uuid.uuid4()}"


def build_probe(probe_type: str, message_id: str | None = None) -> tuple[bytes, str]:
    """A SOAP 1.2 Probe for one type (a key of :data:`PROBE_TYPES`); returns (bytes, id)."""
    prefix, namespace = PROBE_TYPES[probe_type]
    message_id = message_id or new_message_id()
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}" xmlns:d="{WSD}"'
        f' xmlns:{prefix}="{namespace}">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{WSD}/Probe</a:Action>'
        f"<a:MessageID>{escape(message_id)}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{WSA}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        f"<s:Body><d:Probe><d:Types>{escape(probe_type)}</d:Types></d:Probe></s:Body>"
        "</s:Envelope>"
    )
    return xml.encode("utf-8"), message_id


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _text(el: Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def safe_parse(data: bytes, max_bytes: int) -> Element:
    """Parse untrusted XML: size-bounded, no DTD, no entities, no external references.

    Raises :class:`WsdRejected` with the reason; used for SOAP replies as well.
    """
    if len(data) > max_bytes:
        raise WsdRejected(f"oversize message ({len(data)} bytes > {max_bytes})")
    if not data.strip():
        raise WsdRejected("empty message")
    try:
        return _safe_fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise WsdRejected(f"forbidden XML construct ({type(err).__name__})") from None
    except ParseError as err:
        raise WsdRejected(f"malformed XML ({err})") from None
    except (ValueError, LookupError, RecursionError) as err:  # LookupError: unknown encoding
        raise WsdRejected(f"unreadable XML ({type(err).__name__})") from None


def parse_probe_matches(data: bytes, sender: str) -> list[ProbeMatch]:
    """Parse one datagram from ``sender`` (its IP address) into ProbeMatch records.

    Raises :class:`WsdRejected` with the reason for anything else, never another
    exception. A message that is well formed but describes no device (another
    client's Probe, a Bye, a fault) is rejected too, so callers can count and log it.
    """
    try:
        return _parse_probe_matches(data, sender)
    except WsdRejected:
        raise
    except Exception as err:  # defensive: hostile input must never escape as a crash
        raise WsdRejected(f"unparseable message ({type(err).__name__})") from None


_HTTP_START = (b"HTTP/1.", b"POST ")
_GB_ENCODING = re.compile(
    rb"""^(<\?xml[^>]{0,200}?encoding\s*=\s*["'])(gb2312|gbk|gb18030)(["'])""", re.I
)
# Answers that are not about a device, rejected with a reason of their own.
_NOT_A_DEVICE = {
    "Probe": "not a ProbeMatches (action 'Probe', another client's probe)",
    "Resolve": "not a ProbeMatches (action 'Resolve')",
    "Bye": "not a ProbeMatches (action 'Bye')",
}
_MATCH_LISTS = ("ProbeMatches", "ResolveMatches")
_MATCHES = ("ProbeMatch", "ResolveMatch", "Hello")


def clean_datagram(data: bytes) -> bytes:
    """Undo the wrappers vendors put around the SOAP they send over UDP.

    gSOAP-based cameras answer a unicast Probe as an HTTP response (status line and
    headers before the envelope); others append NUL bytes or start with a BOM; and
    Chinese firmwares declare GB2312/GBK, which the XML parser does not know.
    """
    if data.startswith(_HTTP_START):
        _head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            _head, sep, body = data.partition(b"\n\n")
        data = body if sep else data
    data = data.strip(b"\x00 \t\r\n")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:].lstrip(b" \t\r\n")
    match = _GB_ENCODING.match(data)
    if match:
        text = data[match.end() :].decode("gb18030", errors="replace")
        data = match.group(1) + b"UTF-8" + match.group(3) + text.encode("utf-8")
    return data


def _any(parent: Element | None, local: str) -> Element | None:
    """The first child with this local name, whatever its namespace."""
    if parent is None:
        return None
    for el in parent:
        if isinstance(el.tag, str) and _split(el.tag)[1] == local:
            return el
    return None


def _parse_probe_matches(data: bytes, sender: str) -> list[ProbeMatch]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise WsdRejected(f"oversize message ({len(data)} bytes > {MAX_MESSAGE_BYTES})")
    root = safe_parse(clean_datagram(data), MAX_MESSAGE_BYTES)
    # Namespaces are not checked: they protect nothing and only turn away vendors
    # (SOAP 1.1 or 1.2, WS-Addressing 2004/08 or 2005/08, any discovery version).
    if _split(root.tag)[1] != "Envelope":
        raise WsdRejected(f"not a SOAP envelope (root {_split(root.tag)[1]!r})")
    header = _any(root, "Header")
    body = _any(root, "Body")
    if body is None:
        raise WsdRejected("SOAP envelope without Body")
    action = _text(_any(header, "Action")).rsplit("/", 1)[-1]
    if action in _NOT_A_DEVICE:
        raise WsdRejected(_NOT_A_DEVICE[action])
    relates_to = _text(_any(header, "RelatesTo"))
    fault = _any(body, "Fault")
    if fault is not None:
        reason = _text(_any(_any(fault, "Reason"), "Text")) or _text(_any(fault, "faultstring"))
        raise WsdRejected(f"the device answered with a SOAP fault ({reason[:120]!r})")
    candidates: list[Element] = []
    for el in body:
        local = _split(el.tag)[1] if isinstance(el.tag, str) else ""
        if local in _MATCH_LISTS:
            candidates += [m for m in el if isinstance(m.tag, str) and _split(m.tag)[1] in _MATCHES]
        elif local in _MATCHES:  # a ProbeMatch (or Hello) straight in the Body
            candidates.append(el)
    if not candidates:
        raise WsdRejected("Body holds no ProbeMatches")
    out: list[ProbeMatch] = []
    for match_el in candidates[:64]:
        match = _parse_match(match_el, sender, relates_to)
        if match is not None:
            out.append(match)
    if not out:
        raise WsdRejected("ProbeMatches without a usable ProbeMatch")
    return out


def parse_announcement(data: bytes, sender: str) -> tuple[str, list[ProbeMatch] | str]:
    """A multicast Hello or Bye: ("hello", [ProbeMatch]) or ("bye", endpoint).

    Raises :class:`WsdRejected` for anything else (Probes of other clients, junk).
    """
    try:
        if len(data) > MAX_MESSAGE_BYTES:
            raise WsdRejected(f"oversize message ({len(data)} bytes > {MAX_MESSAGE_BYTES})")
        root = safe_parse(clean_datagram(data), MAX_MESSAGE_BYTES)
        bye = _any(_any(root, "Body"), "Bye")
        if _split(root.tag)[1] == "Envelope" and bye is not None:
            endpoint = _text(_any(_any(bye, "EndpointReference"), "Address"))
            if not endpoint:
                raise WsdRejected("Bye without an endpoint")
            return "bye", endpoint[:512]
    except WsdRejected:
        raise
    except Exception as err:  # hostile input must never escape as a crash
        raise WsdRejected(f"unparseable message ({type(err).__name__})") from None
    return "hello", parse_probe_matches(data, sender)


def _default_xaddr(sender: str) -> list[str]:
    """The ONVIF device service at the sender, for matches that name no XAddrs."""
    try:
        ip = ipaddress.ip_address(sender)
    except ValueError:
        return []
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return [f"http://{host}/onvif/device_service"]


def _parse_match(el: Element, sender: str, relates_to: str) -> ProbeMatch | None:
    epr = _any(el, "EndpointReference")
    endpoint = _text(_any(epr, "Address"))
    xaddrs_raw = _text(_any(el, "XAddrs")).split()
    if not endpoint and not xaddrs_raw:
        return None
    types = _text(_any(el, "Types")).split()
    scopes = _text(_any(el, "Scopes")).split()
    version_text = _text(_any(el, "MetadataVersion"))
    xaddrs = fix_xaddrs(xaddrs_raw, sender) if xaddrs_raw else _default_xaddr(sender)
    info = parse_scopes(scopes)
    return ProbeMatch(
        endpoint=endpoint[:512] or f"xaddr:{xaddrs[0] if xaddrs else sender}",
        address=sender,
        xaddrs=xaddrs,
        types=types[:32],
        scopes=scopes[:64],
        name=info["name"],
        location=info["location"],
        hardware=info["hardware"],
        # xs:unsignedInt: ASCII digits only ("²".isdigit() is true but int() fails).
        metadata_version=int(version_text) if _is_uint(version_text) else None,
        relates_to=relates_to,
    )


def _is_uint(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10


def parse_scopes(scopes: list[str]) -> dict[str, str]:
    """``onvif://www.onvif.org/name/…`` etc. → name, location, hardware (decoded)."""
    found: dict[str, list[str]] = {"name": [], "location": [], "hardware": []}
    for scope in scopes:
        if not scope.lower().startswith(_SCOPE_PREFIX):
            continue
        rest = scope[len(_SCOPE_PREFIX) :]
        kind, _, value = rest.partition("/")
        kind = kind.lower()
        if kind in found and value:
            decoded = unquote(value, errors="replace").strip()
            # Some firmwares use '_' for spaces in names; keep what they sent.
            found[kind].append(decoded[:256])
    return {
        "name": found["name"][0] if found["name"] else "",
        "location": ", ".join(found["location"]),
        "hardware": found["hardware"][0] if found["hardware"] else "",
    }


def _host_is_usable(host: str, sender: str) -> bool:
    """False for hosts a camera reports but nobody can reach it at."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return bool(host)  # a DNS name: trust it
    if ip.is_unspecified or ip.is_multicast:
        return False
    try:
        sender_ip = ipaddress.ip_address(sender)
    except ValueError:
        return True
    if ip.version != sender_ip.version:
        return True  # an IPv6 XAddr next to an IPv4 sender: keep, it may be reachable
    # A loopback address from a device on the LAN is the device talking about itself.
    return not (ip.is_loopback and not sender_ip.is_loopback)


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _same_subnet(host: str, sender_ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``host`` is an address in the sender's /24 (IPv4) or /64 (IPv6)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.version != sender_ip.version:
        return False
    prefix = 24 if ip.version == 4 else 64
    return ip in ipaddress.ip_network(f"{sender_ip}/{prefix}", strict=False)


def fix_xaddrs(xaddrs: list[str], sender: str) -> list[str]:
    """Keep the usable service addresses, patching bad hosts to the sender's address.

    A camera may report ``0.0.0.0``, a loopback address, or an old address (DHCP
    moved it); when no XAddr of the sender's IP family names the sender itself,
    the IPv4/IPv6 literal ones are rewritten to the sender's address. DNS names
    are kept. Sender-matching addresses come first, then those of the sender's subnet.
    """
    first: list[str] = []
    rest: list[str] = []
    try:
        sender_ip = ipaddress.ip_address(sender)
    except ValueError:
        sender_ip = None
    parsed: list[tuple[str, str]] = []
    for raw in xaddrs[:16]:
        try:
            parts = urlsplit(raw)
            host = parts.hostname or ""
            _ = parts.port  # raises ValueError on a bad port
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not host:
            continue
        parsed.append((raw, host))
    names_sender = any(host == sender for _, host in parsed)
    if not names_sender and sender_ip is not None:
        # Several XAddrs, none the sender: the one on the reply's subnet is the likeliest
        # to carry the right port and path (the others are NAT or other NICs).
        parsed.sort(key=lambda item: not _same_subnet(item[1], sender_ip))
    for raw, host in parsed:
        if host == sender:
            first.append(raw)
            continue
        usable = _host_is_usable(host, sender)
        same_family = sender_ip is not None and _ip_version(host) == sender_ip.version
        if not usable or (same_family and not names_sender):
            fixed = with_host(raw, sender, keep_userinfo=False)
            if fixed not in first:
                first.append(fixed)
        else:
            rest.append(raw)
    return first + [x for x in rest if x not in first]
