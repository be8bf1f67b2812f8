"""WS-Discovery prober: multicast on chosen interfaces, and a unicast sweep.

Our own raw-socket prober (the ``wsdiscovery`` package crashes on IPv4 unicast in
its IPv6 thread). One UDP socket per scan for unicast and one per multicast
interface; each Probe carries a fresh MessageID and one type; answers come back
unicast to the socket's port. Answers are parsed by :mod:`gateway.cameras.wsd`,
which rejects hostile datagrams with a reason; the scan logs and counts them and
carries on.

Multicast happens only on interfaces named by the caller (the config's
``discovery.interfaces``, or ``gateway discover --interface``), with TTL 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.aio import within
from gateway.cameras import wsd

log = logging.getLogger(__name__)

MAX_TARGETS = 65536
_LOGGED_REJECTS = 20  # per scan; after that, rejections are only counted
_SIOCGIFADDR = 0x8915

Progress = Callable[[int, int, int], None]  # (probed, total, found)


class DiscoveryError(Exception):
    """A scan that cannot start (bad range, unknown interface); the message says which."""


@dataclass
class ScanResult:
    """What one scan found, and what it threw away."""

    devices: list[wsd.ProbeMatch] = field(default_factory=list)
    probed: int = 0
    rejected: int = 0
    elapsed_s: float = 0.0
    reject_reasons: list[str] = field(default_factory=list)


def expand_targets(ranges: Iterable[str]) -> list[str]:
    """CIDR ranges and single IPv4/IPv6 addresses → addresses to probe (deduplicated)."""
    out: dict[str, None] = {}
    for item in ranges:
        text = str(item).strip()
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise DiscoveryError(f"not an address or CIDR range: {text!r}") from None
        if net.num_addresses > MAX_TARGETS or len(out) + net.num_addresses > MAX_TARGETS + 2:
            raise DiscoveryError(f"range {text} is too large (at most {MAX_TARGETS} addresses)")
        hosts = [net.network_address] if net.num_addresses == 1 else list(net.hosts())
        for ip in hosts:
            out[str(ip)] = None
    return list(out)


def interface_address(interface: str) -> str:
    """An interface name (``eth1``) or IPv4 address → the IPv4 address to send from."""
    try:
        return str(ipaddress.IPv4Address(interface))
    except ValueError:
        pass
    name = interface.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name))
        except OSError:
            raise DiscoveryError(
                f"interface {interface!r} does not exist or has no IPv4 address"
            ) from None
    return socket.inet_ntoa(packed[20:24])


class _Pacer:
    """Spaces sends to at most ``rate`` per second (small bursts allowed)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(self.next, now)
        self.next = slot + self.interval
        if slot - now > 0.002:
            await asyncio.sleep(slot - now)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, scan: Scan) -> None:
        self.scan = scan

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.scan._on_datagram(data, addr[0])

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from an address without a responder: expected in sweeps.
        log.debug("discovery socket error: %s", exc)


class Scan:
    """One discovery run. Use :meth:`run`; the result's devices are deduplicated."""

    def __init__(
        self,
        *,
        port: int = wsd.PORT,
        timeout: float = 2.0,
        concurrency: int = 256,
        rate_per_s: float = 2000.0,
        progress: Progress | None = None,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.pacer = _Pacer(rate_per_s)
        self.progress = progress
        self.result = ScanResult()
        self._by_endpoint: dict[str, wsd.ProbeMatch] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self._probes: dict[str, bytes] = {}
        self._message_ids: set[str] = set()
        self._total = 0

    async def run(self, targets: Iterable[str] = (), interfaces: Iterable[str] = ()) -> ScanResult:
        """Sweep ``targets`` (addresses) by unicast and multicast on ``interfaces``."""
        started = time.monotonic()
        targets = list(targets)
        addresses = [interface_address(i) for i in interfaces]
        self._total = len(targets)
        jobs = []
        if targets:
            jobs.append(self._sweep(targets))
        for addr in addresses:
            jobs.append(self._multicast(addr))
        try:
            await asyncio.gather(*jobs)
        finally:
            self.result.devices = list(self._by_endpoint.values())
            self.result.elapsed_s = time.monotonic() - started
        return self.result

    async def _open(self, bind: tuple[str, int], family: int = socket.AF_INET) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(bind)
        return sock

    async def _sweep(self, targets: list[str]) -> None:
        loop = asyncio.get_running_loop()
        sockets: dict[int, tuple[asyncio.DatagramTransport, socket.socket]] = {}
        families = {ipaddress.ip_address(t).version for t in targets}
        try:
            for version in families:
                family = socket.AF_INET if version == 4 else socket.AF_INET6
                sock = await self._open(("0.0.0.0" if version == 4 else "::", 0), family)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Receiver(self), sock=sock
                )
                sockets[version] = (transport, sock)
            queue = iter(targets)
            workers = min(self.concurrency, len(targets))
            await asyncio.gather(*(self._worker(queue, sockets) for _ in range(workers)))
            # A device answering one Probe type may still be answering the other.
            await asyncio.sleep(min(0.2, self.timeout))
        finally:
            for transport, _ in sockets.values():
                transport.close()

    async def _worker(self, queue, sockets) -> None:
        for address in queue:
            version = ipaddress.ip_address(address).version
            transport = sockets[version][0]
            answered = asyncio.Event()
            self._waiting[address] = answered
            for probe_type in wsd.PROBE_TYPES:
                await self.pacer.wait()
                data, message_id = wsd.build_probe(probe_type)
                self._message_ids.add(message_id)
                transport.sendto(data, (address, self.port))
            with contextlib.suppress(TimeoutError):
                await within(answered.wait(), self.timeout)
            self._waiting.pop(address, None)
            self.result.probed += 1
            if self.progress:
                self.progress(self.result.probed, self._total, len(self._by_endpoint))

    async def _multicast(self, source: str) -> None:
        loop = asyncio.get_running_loop()
        sock = await self._open((source, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        # TTL 1: a Probe never leaves the camera LAN it was meant for.
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Receiver(self), sock=sock)
        try:
            probes = []
            for probe_type in wsd.PROBE_TYPES:
                data, message_id = wsd.build_probe(probe_type)
                self._message_ids.add(message_id)
                probes.append(data)
            log.info("multicast WS-Discovery probe on %s", source)
            # UDP multicast may be lost: repeat once with the same MessageID
            # (a retransmission, which devices answer at most once).
            for attempt in range(2):
                for data in probes:
                    transport.sendto(data, (wsd.MULTICAST_GROUP, self.port))
                if attempt == 0:
                    await asyncio.sleep(min(0.25, self.timeout / 4))
            await asyncio.sleep(self.timeout)
        finally:
            transport.close()

    def _on_datagram(self, data: bytes, sender: str) -> None:
        try:
            matches = wsd.parse_probe_matches(data, sender)
        except wsd.WsdRejected as err:
            self.result.rejected += 1
            if len(self.result.reject_reasons) < _LOGGED_REJECTS:
                self.result.reject_reasons.append(f"{sender}: {err}")
                log.warning("discovery: rejected a reply from %s: %s", sender, err)
            else:
                log.debug("discovery: rejected a reply from %s: %s", sender, err)
            return
        for match in matches:
            if match.relates_to and match.relates_to not in self._message_ids:
                # A late answer to an earlier scan, or not meant for us; still a
                # live device, so keep it, but say so when debugging.
                log.debug("discovery: %s answered a probe we did not send", sender)
            known = self._by_endpoint.get(match.endpoint)
            if known is None:
                self._by_endpoint[match.endpoint] = match
            else:
                known.xaddrs += [x for x in match.xaddrs if x not in known.xaddrs]
                known.types += [t for t in match.types if t not in known.types]
        waiter = self._waiting.get(sender)
        if waiter is not None:
            waiter.set()


async def discover(
    ranges: Iterable[str] = (),
    interfaces: Iterable[str] = (),
    *,
    port: int = wsd.PORT,
    timeout: float = 2.0,
    concurrency: int = 256,
    rate_per_s: float = 2000.0,
    progress: Progress | None = None,
) -> ScanResult:
    """Probe ``ranges`` by unicast and ``interfaces`` by multicast; see :class:`Scan`."""
    targets = expand_targets(ranges)
    scan = Scan(
        port=port,
        timeout=timeout,
        concurrency=concurrency,
        rate_per_s=rate_per_s,
        progress=progress,
    )
    return await scan.run(targets, list(interfaces))
