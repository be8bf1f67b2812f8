"""Which local addresses become ICE host candidates.

aioice offers no option for this: it gathers every address of every interface
except exactly ``127.0.0.1`` (and ``::1``), so a box with only loopback — or a test
that must stay on loopback — gets no usable candidate, and a box with many
interfaces offers all of them. The maintainers declined per-address options
(aiortc/aioice#2, #57), so we wrap the module-level ``aioice.ice.get_host_addresses``
once with a function that reads a :class:`contextvars.ContextVar`.

aiortc gathers inside ``setLocalDescription`` through ``asyncio.gather``, whose tasks
copy the caller's context, so ``with host_addresses([...]):`` around
``setLocalDescription`` restricts that one peer connection and nothing else.
Outside such a block aioice behaves exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
from collections.abc import Iterator, Sequence

import aioice.ice
import ifaddr

log = logging.getLogger(__name__)

_chosen: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "gateway_ice_host_addresses", default=None
)
_original = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _chosen.get()
    if chosen is None:
        return _original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    out = []
    for addr in chosen:
        version = ipaddress.ip_address(addr).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            out.append(addr)
    return out


def install() -> None:
    """Put the context-aware gatherer in place (idempotent)."""
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


def resolve_interfaces(names: Sequence[str]) -> list[str]:
    """Turn configured interfaces (IP addresses or interface names) into addresses.

    Loopback addresses are allowed on purpose (tests, and boxes whose only viewers
    are local). IPv6 link-local addresses are skipped: they need a scope id that
    SDP candidates cannot carry.
    """
    by_name: dict[str, list[str]] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            by_name.setdefault(adapter.nice_name, []).append(addr)
    out: list[str] = []
    for name in names:
        try:
            out.append(str(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        addrs = [a for a in by_name.get(name, []) if not ipaddress.ip_address(a).is_link_local]
        if not addrs:
            log.warning("relay.interfaces: %s is neither an address nor an interface here", name)
        out.extend(addrs)
    # Keep order, drop duplicates.
    return list(dict.fromkeys(out))


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Within this block, ICE gathering offers exactly ``addresses`` (None: aioice's own)."""
    install()
    token = _chosen.set(tuple(addresses) if addresses is not None else None)
    try:
        yield
    finally:
        _chosen.reset(token)
