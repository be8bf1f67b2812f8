"""The discovery part (``gw.discovery``): scans on request and periodic re-discovery.

A scan probes the configured ranges (unicast) and interfaces (multicast), plus
the address of every known ONVIF camera, so re-discovery can mark each known
camera seen or unseen. New devices are kept as results for the API to add; with
``discovery.auto_add`` they are added at once as ``cam-NN`` in address order,
with the configured default credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from typing import Any
from urllib.parse import urlsplit

from gateway.cameras import discovery, wsd
from gateway.cameras.announcements import AnnouncementListener
from gateway.cameras.model import Camera, CameraCreate, FieldError, OnvifIn
from gateway.cameras.registry import Registry
from gateway.config import DiscoverySettings

log = logging.getLogger(__name__)


class ScanBusy(RuntimeError):
    """A scan is already running."""


def _ip_key(address: str) -> tuple[int, int]:
    try:
        ip = ipaddress.ip_address(address)
        return ip.version, int(ip)
    except ValueError:
        return 9, 0


def onvif_endpoint(device: wsd.ProbeMatch) -> tuple[str, int]:
    """Host and port of a discovered device's ONVIF service (first XAddr)."""
    for xaddr in device.xaddrs:
        try:
            parts = urlsplit(xaddr)
            if parts.hostname:
                return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
    return device.address, 80


class DiscoveryService:
    """Runs scans one at a time; keeps the last scan's status and results."""

    def __init__(self, settings: DiscoverySettings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry  # marks known cameras seen or unseen, adds new ones
        self._task: asyncio.Task | None = None
        self._loop_task: asyncio.Task | None = None
        self.devices: dict[str, wsd.ProbeMatch] = {}
        self.state: dict[str, Any] = {"state": "idle", "scans": 0}
        self.listener: AnnouncementListener | None = None
        self._adding: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.settings.interval_s > 0:
            self._loop_task = asyncio.get_running_loop().create_task(self._periodic())
        if self.settings.announcements and self.settings.interfaces:
            listener = AnnouncementListener(self._on_hello, self._on_bye)
            try:
                await listener.start(list(self.settings.interfaces), self.settings.port)
            except (discovery.DiscoveryError, OSError) as err:
                log.warning("discovery: cannot listen for Hello/Bye: %s", err)
            else:
                self.listener = listener

    def _on_hello(self, device: wsd.ProbeMatch) -> None:
        """A camera announced itself: a result at once, seen if known, added if asked."""
        self.devices[device.endpoint] = device
        cam = self._match(device)
        log.info("discovery: Hello from %s (%s)", device.address, device.name or device.endpoint)
        if cam is not None:
            self.registry.mark_seen(cam.id, True)
        elif self.settings.auto_add:
            task = asyncio.get_running_loop().create_task(self._auto_add([device]))
            self._adding.add(task)
            task.add_done_callback(self._adding.discard)

    def _on_bye(self, endpoint: str, sender: str) -> None:
        """A camera said it leaves: known cameras are marked unseen."""
        log.info("discovery: Bye from %s (%s)", sender, endpoint)
        device = self.devices.pop(endpoint, None)
        cam = self.registry.find_duplicate(endpoint=endpoint)
        if cam is None and device is not None:
            cam = self._match(device)
        if cam is not None:
            self.registry.mark_seen(cam.id, False)

    async def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        for task in list(self._adding):
            task.cancel()
        for running in (self._loop_task, self._task):
            if running is not None:
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running

    # -- scans -------------------------------------------------------------

    def _check(self, ranges: list[str], interfaces: list[str]) -> list[str]:
        try:
            targets = discovery.expand_targets(ranges)
        except discovery.DiscoveryError as err:
            raise FieldError("ranges", str(err)) from None
        allowed = set(self.settings.interfaces)
        for name in interfaces:
            if name not in allowed:
                raise FieldError(
                    "interfaces",
                    f"{name!r} is not in discovery.interfaces of the config; "
                    "multicast only goes out on interfaces named there",
                )
        return targets

    def start_scan(
        self, ranges: list[str] | None = None, interfaces: list[str] | None = None
    ) -> dict[str, Any]:
        """Start a scan in the background (defaults: the configured ranges/interfaces)."""
        if self._task is not None and not self._task.done():
            raise ScanBusy("a discovery scan is already running")
        ranges = list(self.settings.ranges if ranges is None else ranges)
        interfaces = list(self.settings.interfaces if interfaces is None else interfaces)
        targets = self._check(ranges, interfaces)
        self._task = asyncio.get_running_loop().create_task(self._scan(targets, interfaces))
        return self.status()

    def _known_targets(self) -> list[str]:
        out = []
        for cam in self.registry.list():
            host = (cam.onvif or {}).get("host")
            if not isinstance(host, str):
                continue
            with contextlib.suppress(ValueError):
                out.append(str(ipaddress.ip_address(host)))
        return out

    async def _scan(self, targets: list[str], interfaces: list[str]) -> list[wsd.ProbeMatch]:
        targets = list(dict.fromkeys(targets + self._known_targets()))
        self.state = {
            "state": "running",
            "scans": self.state.get("scans", 0) + 1,
            "started": time.time(),
            "targets": len(targets),
            "interfaces": interfaces,
            "probed": 0,
            "found": 0,
        }

        def progress(probed: int, total: int, found: int) -> None:
            self.state.update(probed=probed, found=found)

        try:
            result = await discovery.discover(
                targets,
                interfaces,
                port=self.settings.port,
                timeout=self.settings.timeout_s,
                concurrency=self.settings.concurrency,
                rate_per_s=self.settings.rate_per_s,
                progress=progress,
            )
        except (discovery.DiscoveryError, OSError) as err:
            log.warning("discovery scan failed: %s", err)
            self.state.update(state="error", error=str(err), finished=time.time())
            return []
        devices = sorted(result.devices, key=lambda d: _ip_key(d.address))
        self.devices = {d.endpoint: d for d in devices}
        self.state.update(
            state="done",
            finished=time.time(),
            elapsed_s=round(result.elapsed_s, 3),
            found=len(devices),
            rejected=result.rejected,
        )
        log.log(
            logging.INFO if targets or interfaces else logging.DEBUG,
            "discovery: %d device(s) from %d address(es) in %.1f s (%d rejected replies)",
            len(devices),
            len(targets),
            result.elapsed_s,
            result.rejected,
        )
        self._mark_known(devices)
        if self.settings.auto_add:
            await self._auto_add(devices)
        return devices

    def status(self) -> dict[str, Any]:
        return {**self.state, "results": self.results()}

    def results(self) -> list[dict[str, Any]]:
        out = []
        for device in self.devices.values():
            item = device.public()
            item["host"], item["port"] = onvif_endpoint(device)  # what to add it by
            cam = self._match(device)
            item["camera"] = cam.id if cam else None
            out.append(item)
        return out

    # -- the registry side ---------------------------------------------------

    def _match(self, device: wsd.ProbeMatch) -> Camera | None:
        host, port = onvif_endpoint(device)
        registry = self.registry
        return registry.find_duplicate(endpoint=device.endpoint) or registry.find_duplicate(
            host=host, port=port
        )

    def _mark_known(self, devices: list[wsd.ProbeMatch]) -> None:
        registry = self.registry
        seen: set[str] = set()
        for device in devices:
            cam = self._match(device)
            if cam is not None:
                seen.add(cam.id)
        for cam in registry.list():
            if cam.onvif:
                registry.mark_seen(cam.id, cam.id in seen)

    async def _auto_add(self, devices: list[wsd.ProbeMatch]) -> None:
        registry = self.registry
        password = self.settings.password.get_secret_value() if self.settings.password else None
        added = []
        for device in devices:
            if self._match(device) is not None:
                continue
            cam = await self.add(
                device.endpoint, username=self.settings.username, password=password, probe=False
            )
            added.append(cam.id)
            registry.mark_seen(cam.id, True)
        if added:
            log.info("discovery: added %s", ", ".join(added))
            await registry.refresh_all(added)

    async def add(
        self,
        endpoint: str | None = None,
        address: str | None = None,
        *,
        name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        probe: bool = True,
        **tags: Any,
    ) -> Camera:
        """Register a device from the last results (by endpoint reference or address)."""
        device = self.devices.get(endpoint or "")
        if device is None and address:
            device = next((d for d in self.devices.values() if d.address == address), None)
        if device is None:
            raise FieldError(
                "endpoint" if endpoint else "address",
                "not among the last discovery results; run a scan first",
            )
        host, port = onvif_endpoint(device)
        # An https XAddr: ONVIF over HTTPS (a self-signed certificate still needs allowing).
        https = bool(device.xaddrs) and device.xaddrs[0].lower().startswith("https://")
        registry = self.registry
        spec = CameraCreate(
            id=tags.pop("id", None) or registry.next_id(),
            name=name or device.name or None,
            location=tags.pop("location", None) or device.location or None,
            onvif=OnvifIn(host=host, port=port, username=username, password=password, https=https),
            endpoint=device.endpoint,
            **tags,
        )
        return await registry.add(spec, source="discovery", probe=probe)

    async def _periodic(self) -> None:
        await asyncio.sleep(1.0)  # let the other parts finish starting
        while True:
            if self._task is None or self._task.done():
                try:
                    self.start_scan()
                    if self._task is not None:
                        await self._task
                except (FieldError, ScanBusy) as err:
                    log.warning("periodic discovery skipped: %s", err)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic discovery failed")
            await asyncio.sleep(self.settings.interval_s)
