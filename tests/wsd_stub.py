"""A tiny WS-Discovery responder for tests: answers Probes on one loopback address.

Not the simulator: it exists so the prober can be tested against replies we
control exactly (vendor quirks, hostile datagrams) on real UDP sockets.
"""

from __future__ import annotations

import asyncio
import random
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable

from gateway.cameras import wsd

NS = {"s": wsd.SOAP12, "a": wsd.WSA, "d": wsd.WSD}


def probe_match(
    endpoint: str, xaddr: str, relates_to: str, name: str = "cam", types: str = ""
) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{wsd.SOAP12}" xmlns:a="{wsd.WSA}" xmlns:d="{wsd.WSD}">'
        f"<s:Header><a:Action>{wsd.WSD}/ProbeMatches</a:Action>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo></s:Header>"
        f"<s:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<a:EndpointReference><a:Address>{endpoint}</a:Address></a:EndpointReference>"
        f"<d:Types>{types}</d:Types>"
        f"<d:Scopes>onvif://www.onvif.org/name/{name} onvif://www.onvif.org/hardware/Stub</d:Scopes>"
        f"<d:XAddrs>{xaddr}</d:XAddrs><d:MetadataVersion>1</d:MetadataVersion>"
        f"</d:ProbeMatch></d:ProbeMatches></s:Body></s:Envelope>"
    ).encode()


class StubResponder(asyncio.DatagramProtocol):
    """Answers each Probe with ``reply(message_id, probe_type)`` → list of datagrams."""

    def __init__(self, address: str, reply: Callable[[str, str], list[bytes]]) -> None:
        self.address = address
        self.reply = reply
        self.probes: list[tuple[str, str]] = []  # (message_id, type)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        root = ET.fromstring(data)
        message_id = root.findtext("s:Header/a:MessageID", namespaces=NS) or ""
        probe_type = root.findtext("s:Body/d:Probe/d:Types", namespaces=NS) or ""
        self.probes.append((message_id, probe_type))
        assert self.transport is not None
        for datagram in self.reply(message_id, probe_type):
            self.transport.sendto(datagram, addr)


def good_reply(address: str, endpoint: str, name: str = "cam", xaddr_host: str | None = None):
    host = xaddr_host or address

    def reply(message_id: str, probe_type: str) -> list[bytes]:
        xaddr = f"http://{host}:80/onvif/device_service"
        return [probe_match(endpoint, xaddr, message_id, name, probe_type)]

    return reply


def pick_port() -> int:
    """A UDP port free on 127.0.0.1 (the stubs bind 127.0.77.x with the same port)."""
    for _ in range(50):
        port = random.randint(20000, 60000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free UDP port")


async def start_stub(address: str, port: int, reply) -> tuple[StubResponder, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: StubResponder(address, reply), local_addr=(address, port)
    )
    return proto, transport
