"""WS-Discovery Hello and Bye: cameras announcing that they joined or leave the network.

Listens on UDP 3702 for the multicast group 239.255.255.250, joined only on the
interfaces the configuration names (``discovery.interfaces``), as the prober
multicasts only there. Every datagram goes through :func:`wsd.parse_announcement`
(bounded, no DTD or entities); Hellos and Byes reach the callbacks, everything
else (other clients' Probes, junk) is counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from gateway.cameras import wsd
from gateway.cameras.discovery import interface_address

log = logging.getLogger(__name__)

OnHello = Callable[[wsd.ProbeMatch], None]
OnBye = Callable[[str, str], None]  # (endpoint, sender address)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: AnnouncementListener) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.owner._on_datagram(data, addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("announcement socket error: %s", exc)


class AnnouncementListener:
    """Receives Hello/Bye on the given interfaces; :meth:`close` frees the socket."""

    def __init__(self, on_hello: OnHello, on_bye: OnBye) -> None:
        self.on_hello = on_hello
        self.on_bye = on_bye
        self.hellos = 0
        self.byes = 0
        self.ignored = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self, interfaces: list[str], port: int = wsd.PORT) -> None:
        addresses = [interface_address(i) for i in interfaces]  # DiscoveryError when unknown
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Shared with other WS-Discovery software on the box (and the simulator).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((wsd.MULTICAST_GROUP, port))  # only multicast, never unicast replies
            for address in addresses:
                mreq = socket.inet_aton(wsd.MULTICAST_GROUP) + socket.inet_aton(address)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        log.info("listening for WS-Discovery Hello/Bye on %s", ", ".join(addresses))

    def _on_datagram(self, data: bytes, sender: str) -> None:
        try:
            kind, what = wsd.parse_announcement(data, sender)
        except wsd.WsdRejected as err:
            self.ignored += 1
            log.debug("announcement from %s ignored: %s", sender, err)
            return
        try:
            if kind == "bye" and isinstance(what, str):
                self.byes += 1
                self.on_bye(what, sender)
            elif isinstance(what, list):
                self.hellos += 1
                for match in what:
                    self.on_hello(match)
        except Exception:
            log.exception("handling a WS-Discovery %s from %s failed", kind, sender)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
