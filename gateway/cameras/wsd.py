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
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring

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

_ENVELOPES = {SOAP12, SOAP11}
_ADDRESSING = {WSA, WSA10}
_DISCOVERY = {WSD, WSD11}
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


def _child(parent: Element, local: str, namespaces: set[str]) -> Element | None:
    for el in parent:
        if not isinstance(el.tag, str):
            continue
        ns, name = _split(el.tag)
        if name == local and ns in namespaces:
            return el
    return None


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
    except (ValueError, UnicodeError, RecursionError) as err:
        raise WsdRejected(f"unreadable XML ({type(err).__name__})") from None


def parse_probe_matches(data: bytes, sender: str) -> list[ProbeMatch]:
    """Parse one datagram from ``sender`` (its IP address) into ProbeMatch records.

    Raises :class:`WsdRejected` with the reason for anything else, never another
    exception. A message that is well formed but not a ProbeMatches (a Hello,
    another client's Probe) is rejected too, so callers can count and log it.
    """
    try:
        return _parse_probe_matches(data, sender)
    except WsdRejected:
        raise
    except Exception as err:  # defensive: hostile input must never escape as a crash
        raise WsdRejected(f"unparseable message ({type(err).__name__})") from None


def _parse_probe_matches(data: bytes, sender: str) -> list[ProbeMatch]:
    root = safe_parse(data, MAX_MESSAGE_BYTES)
    ns, local = _split(root.tag)
    if local != "Envelope" or ns not in _ENVELOPES:
        raise WsdRejected(f"not a SOAP envelope (root {local!r})")
    header = _child(root, "Header", {ns})
    body = _child(root, "Body", {ns})
    if body is None:
        raise WsdRejected("SOAP envelope without Body")
    relates_to = ""
    if header is not None:
        action = _text(_child(header, "Action", _ADDRESSING))
        if action and not action.endswith("/ProbeMatches"):
            raise WsdRejected(f"not a ProbeMatches (action {action.rsplit('/', 1)[-1]!r})")
        relates_to = _text(_child(header, "RelatesTo", _ADDRESSING))
    matches_el = _child(body, "ProbeMatches", _DISCOVERY)
    if matches_el is None:
        raise WsdRejected("Body holds no ProbeMatches")
    out: list[ProbeMatch] = []
    for match_el in matches_el:
        if not isinstance(match_el.tag, str) or _split(match_el.tag)[1] != "ProbeMatch":
            continue
        match = _parse_match(match_el, sender, relates_to)
        if match is not None:
            out.append(match)
    if not out:
        raise WsdRejected("ProbeMatches without a usable ProbeMatch")
    return out


def _parse_match(el: Element, sender: str, relates_to: str) -> ProbeMatch | None:
    epr = _child(el, "EndpointReference", _ADDRESSING)
    endpoint = _text(_child(epr, "Address", _ADDRESSING)) if epr is not None else ""
    xaddrs_raw = _text(_child(el, "XAddrs", _DISCOVERY)).split()
    if not endpoint and not xaddrs_raw:
        return None
    types = _text(_child(el, "Types", _DISCOVERY)).split()
    scopes = _text(_child(el, "Scopes", _DISCOVERY)).split()
    version_text = _text(_child(el, "MetadataVersion", _DISCOVERY))
    xaddrs = fix_xaddrs(xaddrs_raw, sender)
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


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def fix_xaddrs(xaddrs: list[str], sender: str) -> list[str]:
    """Keep the usable service addresses, patching bad hosts to the sender's address.

    A camera may report ``0.0.0.0``, a loopback address, or an old address (DHCP
    moved it); when no XAddr of the sender's IP family names the sender itself,
    the IPv4/IPv6 literal ones are rewritten to the sender's address. DNS names
    are kept. Sender-matching addresses come first.
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
    for raw, host in parsed:
        if host == sender:
            first.append(raw)
            continue
        usable = _host_is_usable(host, sender)
        same_family = sender_ip is not None and _ip_version(host) == sender_ip.version
        if not usable or (same_family and not names_sender):
            fixed = _with_host(raw, sender)
            if fixed not in first:
                first.append(fixed)
        else:
            rest.append(raw)
    return first + [x for x in rest if x not in first]
