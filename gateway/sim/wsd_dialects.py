"""The ways real cameras word a ProbeMatches, for the simulator's WS-Discovery responder.

``gateway sim --wsd-dialect NAME`` (or ``mixed``: camera *i* takes the *i*-th
dialect) makes the responder answer like a given family of firmwares, so the
gateway's discovery is tested against each:

- ``standard``: SOAP 1.2, WS-Addressing 2004/08, ProbeMatches, RelatesTo (ONVIF's own form);
- ``soap11``: a SOAP 1.1 envelope with ``SOAP-ENV`` prefixes;
- ``wsa10``: WS-Addressing 2005/08 with the 2005/04 discovery namespace;
- ``bare-match``: a ProbeMatch straight in the Body, Action ``…/ProbeMatch``;
- ``no-action``: no Action, no RelatesTo, no Types;
- ``http-framed``: a gSOAP-style HTTP response head before the envelope, NUL at the end;
- ``gb2312``: ``encoding="GB2312"`` with the Chinese name as raw GB2312 bytes;
- ``zero-xaddr``: XAddrs naming 0.0.0.0 and a stale address;
- ``multi-xaddr``: several XAddrs: another subnet, IPv6 link-local, then the real one.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.sim.onvif_device import scopes
from gateway.sim.onvif_soap import ENV, SOAP11_ENV, x

DIALECTS = (
    "standard",
    "soap11",
    "wsa10",
    "bare-match",
    "no-action",
    "http-framed",
    "gb2312",
    "zero-xaddr",
    "multi-xaddr",
)
WSA04 = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSA10 = "http://www.w3.org/2005/08/addressing"
WSD05 = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
_PATH = "/onvif/device_service"


def dialect_of(camera: Any, setting: str) -> str:
    if setting == "mixed":
        return DIALECTS[(camera.index - 1) % len(DIALECTS)]
    return setting if setting in DIALECTS else "standard"


def _xaddrs(camera: Any, dialect: str) -> str:
    url = camera.onvif_url()
    port = camera.http_port
    if dialect == "zero-xaddr":
        return f"http://0.0.0.0:{port}{_PATH} http://10.9.8.7:{port}{_PATH}"
    if dialect == "multi-xaddr":
        return f"http://172.31.5.5:{port}{_PATH} http://[fe80::1]:{port}{_PATH} {url}"
    return url


def probe_match(camera: Any, dialect: str, relates_to: str) -> bytes:
    """The whole ProbeMatches datagram for one camera in one dialect."""
    raw_scopes = " ".join(scopes(camera))
    if dialect == "gb2312":
        raw_scopes = raw_scopes.replace(
            raw_scopes.split("/name/")[1].split(" ")[0], "\u6751\u53e3\u6444\u50cf\u673a"
        )
    types = "" if dialect == "no-action" else "<d:Types>dn:NetworkVideoTransmitter</d:Types>"
    match = (
        f"<a:EndpointReference><a:Address>{x(camera.endpoint)}</a:Address></a:EndpointReference>"
        f"{types}<d:Scopes>{x(raw_scopes)}</d:Scopes><d:XAddrs>{x(_xaddrs(camera, dialect))}"
        "</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>"
    )
    env = SOAP11_ENV if dialect == "soap11" else ENV
    prefix = "SOAP-ENV" if dialect == "soap11" else "s"
    wsa = WSA10 if dialect == "wsa10" else WSA04
    action_name = "ProbeMatch" if dialect == "bare-match" else "ProbeMatches"
    header = f"<a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
    if dialect != "no-action":
        header += f"<a:RelatesTo>{x(relates_to)}</a:RelatesTo>"
        header += f"<a:Action>{WSD05}/{action_name}</a:Action>"
    if dialect == "bare-match":
        body = f"<d:ProbeMatch>{match}</d:ProbeMatch>"
    else:
        body = f"<d:ProbeMatches><d:ProbeMatch>{match}</d:ProbeMatch></d:ProbeMatches>"
    encoding = "GB2312" if dialect == "gb2312" else "UTF-8"
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        f'<{prefix}:Envelope xmlns:{prefix}="{env}" xmlns:a="{wsa}" xmlns:d="{WSD05}" '
        f'xmlns:dn="{DN}" xmlns:tds="{TDS}"><{prefix}:Header>{header}</{prefix}:Header>'
        f"<{prefix}:Body>{body}</{prefix}:Body></{prefix}:Envelope>"
    )
    data = text.encode("gb2312" if dialect == "gb2312" else "utf-8")
    if dialect == "http-framed":
        head = (
            "HTTP/1.1 200 OK\r\nServer: gSOAP/2.8\r\n"
            "Content-Type: application/soap+xml; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        data = head.encode() + data + b"\x00"
    return data
