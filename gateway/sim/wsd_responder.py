"""WS-Discovery responder (target service) for simulated cameras.

Every camera gets a UDP socket on ``camera.address:3702`` that answers unicast
Probes, which is how the gateway sweeps address ranges. Only when a multicast
interface is given (tests do it inside a network namespace) does the responder
also join 239.255.255.250 on it, answer multicast Probes, and announce cameras
with Hello on start (and when they come back online) and Bye on close.

A Probe matches when its Types are empty or all among ``dn:NetworkVideoTransmitter``
and ``tds:Device`` (compared as namespace + local name, whatever the prefixes),
and its Scopes (if any) match ours by RFC 3986 prefix or exact string. The
ProbeMatches goes unicast to the Probe's source address and port, from the
camera's own address, in the WS-Discovery version the Probe used (the 2005/04
draft ONVIF specifies, or 1.1), or in a vendor dialect (``gateway.sim.wsd_dialects``,
``gateway sim --wsd-dialect``). Repeated MessageIDs and malformed or oversize
datagrams are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import struct
import time
import uuid
from collections import OrderedDict
from typing import Any

from lxml import etree

from gateway.sim.onvif_device import scopes
from gateway.sim.onvif_soap import ENV, SoapFault, child, parse_request, x
from gateway.sim.wsd_dialects import dialect_of, probe_match

log = logging.getLogger(__name__)

MULTICAST_GROUP = "239.255.255.250"
PORT = 3702
MAX_DATAGRAM = 32 * 1024
SEEN_IDS = 1024
NVT = ("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")
DEVICE = ("http://www.onvif.org/ver10/device/wsdl", "Device")
ANONYMOUS = {
    "2005": "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous",
    "2009": "http://www.w3.org/2005/08/addressing/anonymous",
}
WSA = {
    "2005": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "2009": "http://www.w3.org/2005/08/addressing",
}
WSD = {
    "2005": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "2009": "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01",
}
DISCOVERY_TO = {
    "2005": "urn:schemas-xmlsoap-org:ws:2005:04:discovery",
    "2009": "urn:docs-oasis-open-org:ws-dd:ns:discovery:2009:01",
}


def _message(version: str, action: str, header: str, body: str) -> bytes:
    wsa, wsd = WSA[version], WSD[version]
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{ENV}" xmlns:a="{wsa}" '
        f'xmlns:d="{wsd}" xmlns:dn="{NVT[0]}" xmlns:tds="{DEVICE[0]}"><s:Header>'
        f"<a:Action>{wsd}/{action}</a:Action><a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>"
        f"{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _description(camera: Any) -> str:
    """EndpointReference, Types, Scopes, XAddrs and MetadataVersion of a camera."""
    return (
        f"<a:EndpointReference><a:Address>{x(camera.endpoint)}</a:Address></a:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        f"<d:Scopes>{x(' '.join(scopes(camera)))}</d:Scopes>"
        f"<d:XAddrs>{x(camera.onvif_url())}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>"
    )


def _types_match(types_el: etree._Element | None) -> bool:
    if types_el is None or not (types_el.text or "").strip():
        return True
    for qname in types_el.text.split():
        prefix, _, local = qname.rpartition(":")
        namespace = types_el.nsmap.get(prefix or None)
        if (namespace, local) not in (NVT, DEVICE):
            return False
    return True


def _scopes_match(scopes_el: etree._Element | None, ours: list[str]) -> bool:
    wanted = (scopes_el.text or "").split() if scopes_el is not None else []
    if not wanted or scopes_el is None:
        return True
    rule = scopes_el.get("MatchBy", "")
    if not rule or rule in {ns + "/rfc3986" for ns in WSD.values()}:
        return all(any(o == w or o.startswith(w.rstrip("/") + "/") for o in ours) for w in wanted)
    if rule in {ns + "/strcmp0" for ns in WSD.values()}:
        return all(w in ours for w in wanted)
    return False  # an unknown rule matches nothing (WS-Discovery 5.1)


def _same(endpoint: _CameraEndpoint) -> _CameraEndpoint:
    """The protocol factory for an endpoint made beforehand."""
    return endpoint


class _CameraEndpoint(asyncio.DatagramProtocol):
    """One camera's UDP socket: answers Probes, sends Hello and Bye."""

    def __init__(self, responder: WsdResponder, camera: Any) -> None:
        self.responder = responder
        self.camera = camera
        self.transport: asyncio.DatagramTransport | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._number = 0
        self._was_online = bool(getattr(camera, "online", True))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.handle(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("sim %s: WS-Discovery socket error: %s", self.camera.id, exc)

    def _app_sequence(self) -> str:
        self._number += 1
        return (
            f'<d:AppSequence InstanceId="{self.responder.instance_id}" '
            f'MessageNumber="{self._number}"/>'
        )

    def handle(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answer a Probe datagram from ``addr`` if it is one and it matches."""
        if not getattr(self.camera, "online", True) or self.transport is None:
            return
        if len(data) > MAX_DATAGRAM:
            log.debug("sim %s: ignoring %s-byte datagram from %s", self.camera.id, len(data), addr)
            return
        try:
            header, probe = parse_request(data)
        except SoapFault as err:
            log.debug("sim %s: ignoring malformed probe from %s: %s", self.camera.id, addr, err)
            return
        qname = etree.QName(probe)
        version = next((v for v, ns in WSD.items() if ns == qname.namespace), None)
        if version is None or qname.localname != "Probe":
            log.debug("sim %s: ignoring %s from %s", self.camera.id, qname.localname, addr)
            return
        message_id = _header_text(header, WSA[version], "MessageID")
        if not message_id:
            log.debug("sim %s: ignoring probe without MessageID from %s", self.camera.id, addr)
            return
        if message_id in self._seen:
            return  # WS-Discovery: a repeated message is processed once
        self._seen[message_id] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        if not (
            _types_match(child(probe, "Types"))
            and _scopes_match(child(probe, "Scopes"), scopes(self.camera))
        ):
            return
        dialect = dialect_of(self.camera, self.responder.dialect)
        if dialect != "standard":
            self.transport.sendto(probe_match(self.camera, dialect, message_id), addr)
            return
        reply_to = _header_text(header, WSA[version], "ReplyTo", "Address") or ANONYMOUS[version]
        head = (
            f"<a:RelatesTo>{x(message_id)}</a:RelatesTo><a:To>{x(reply_to)}</a:To>"
            + self._app_sequence()
        )
        match = _description(self.camera)
        body = f"<d:ProbeMatches><d:ProbeMatch>{match}</d:ProbeMatch></d:ProbeMatches>"
        self.transport.sendto(_message(version, "ProbeMatches", head, body), addr)
        log.debug("sim %s: ProbeMatches to %s:%s", self.camera.id, addr[0], addr[1])

    def announce(self, action: str) -> None:
        """Multicast Hello or Bye (only called when multicasting is on)."""
        if self.transport is None:
            return
        to = f"<a:To>{DISCOVERY_TO['2005']}</a:To>{self._app_sequence()}"
        if action == "Hello":
            body = f"<d:Hello>{_description(self.camera)}</d:Hello>"
        else:
            body = (
                f"<d:Bye><a:EndpointReference><a:Address>{x(self.camera.endpoint)}</a:Address>"
                "</a:EndpointReference></d:Bye>"
            )
        with contextlib.suppress(OSError):
            self.transport.sendto(_message("2005", action, to, body), (MULTICAST_GROUP, PORT))
        log.debug("sim %s: multicast %s", self.camera.id, action)

    def on_camera_change(self, camera: Any, what: str) -> None:
        """SimCamera listener: announce Hello/Bye when the camera goes on/offline."""
        online = bool(getattr(camera, "online", True))
        if what == "fault" and online != self._was_online:
            self._was_online = online
            if self.responder.multicast:
                self.announce("Hello" if online else "Bye")


def _header_text(header: etree._Element | None, wsa: str, *path: str) -> str | None:
    if header is None:
        return None
    node = header.find(f"{{{wsa}}}" + f"/{{{wsa}}}".join(path))
    return (node.text or "").strip() if node is not None else None


class _MulticastProtocol(asyncio.DatagramProtocol):
    """Receives multicast Probes and hands them to every camera."""

    def __init__(self, responder: WsdResponder) -> None:
        self.responder = responder

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        for endpoint in self.responder.endpoints:
            endpoint.handle(data, addr)


def _mreqn(interface: str) -> bytes:
    """A ``struct ip_mreqn`` for the group on an interface given by IPv4 address or name.

    Linux takes it both for IP_ADD_MEMBERSHIP and IP_MULTICAST_IF.
    """
    group = socket.inet_aton(MULTICAST_GROUP)
    try:
        address = socket.inet_aton(str(ipaddress.IPv4Address(interface)))
        index = 0
    except ValueError:  # an interface name such as "lo"
        address = socket.inet_aton("0.0.0.0")
        index = socket.if_nametoindex(interface)
    return group + address + struct.pack("@i", index)


class WsdResponder:
    """The responder for a set of cameras; :meth:`close` sends Bye and frees the sockets."""

    def __init__(
        self, cameras: list[Any], multicast_interface: str | None, dialect: str = "standard"
    ) -> None:
        self.cameras = cameras
        self.multicast = multicast_interface
        self.dialect = dialect  # see gateway.sim.wsd_dialects
        self.instance_id = int(time.time())
        self.endpoints: list[_CameraEndpoint] = []
        self._transports: list[asyncio.BaseTransport] = []
        self._closed = False

    async def _start(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        mreqn = _mreqn(self.multicast) if self.multicast else b""
        for camera in self.cameras:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # No SO_REUSEADDR: two sims on one address must fail loudly,
                # not share (and randomly steal) each other's probes.
                sock.bind((camera.address, port))
                if self.multicast:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            except OSError:
                sock.close()
                raise
            endpoint = _CameraEndpoint(self, camera)
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_same, endpoint), sock=sock
            )
            self._transports.append(transport)
            self.endpoints.append(endpoint)
            listeners = getattr(camera, "listeners", None)
            if isinstance(listeners, list):
                listeners.append(endpoint.on_camera_change)
        if self.multicast:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # Bound to the group address, it receives only multicast Probes
                # and never competes with the cameras' unicast sockets.
                sock.bind((MULTICAST_GROUP, port))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            except OSError:
                sock.close()
                raise
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _MulticastProtocol(self), sock=sock
            )
            self._transports.append(transport)
            for endpoint in self.endpoints:
                if getattr(endpoint.camera, "online", True):
                    endpoint.announce("Hello")
        log.info(
            "sim: WS-Discovery for %s cameras on port %s (multicast: %s)",
            len(self.cameras),
            port,
            self.multicast or "off",
        )

    def close(self) -> None:
        """Send Bye (when multicasting) and close every socket."""
        if self._closed:
            return
        self._closed = True
        for endpoint in self.endpoints:
            if self.multicast and getattr(endpoint.camera, "online", True):
                endpoint.announce("Bye")
            with contextlib.suppress(AttributeError, ValueError):
                endpoint.camera.listeners.remove(endpoint.on_camera_change)
        for transport in self._transports:
            transport.close()

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)


async def start(
    cameras: list[Any],
    multicast_interface: str | None = None,
    *,
    port: int = PORT,
    dialect: str = "standard",
) -> WsdResponder:
    """Answer WS-Discovery Probes for ``cameras``; multicast only on the given interface."""
    responder = WsdResponder(cameras, multicast_interface, dialect)
    try:
        await responder._start(port)
    except BaseException:
        responder.multicast = None  # no Bye for cameras that never said Hello
        responder.close()
        raise
    return responder
