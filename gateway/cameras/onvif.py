"""ONVIF client on onvif-zeep-async: device info, profiles, stream/snapshot URIs, PTZ.

What it adds to the library:

- every call ends within ``timeout`` seconds (the library's defaults are 30–90 s);
- replies are read with a size bound and checked as safe XML (no DTD, no
  entities, well formed) before zeep sees them;
- faults become :class:`AuthError`, :class:`UnreachableError` or :class:`OnvifError`
  with a message naming the camera ("authentication failed for cam-01");
- service addresses (XAddrs) that name another or an unroutable host are patched
  to the host we reached the device at (keeping their port).

Vendors differ: GetServices is tried first, GetCapabilities second (the library
does both); the camera's clock offset is measured with GetSystemDateAndTime and
used for WS-Security timestamps (the library's ``adjust_time``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import onvif
import zeep.exceptions
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError
from onvif.util import is_auth_error, stringify_onvif_error

from gateway.aio import within

# Re-exported: callers see one module for the whole ONVIF side.
from gateway.cameras.errors import AuthError as AuthError
from gateway.cameras.errors import OnvifError as OnvifError
from gateway.cameras.errors import UnreachableError as UnreachableError
from gateway.cameras.guard import guard_transport
from gateway.cameras.media2 import TR2, Media2
from gateway.cameras.profiles import DeviceInfo as DeviceInfo
from gateway.cameras.profiles import ProbeResult as ProbeResult
from gateway.cameras.profiles import Profile as Profile
from gateway.cameras.profiles import from_media1
from gateway.cameras.snapshot import DEFAULT_TIMEOUT
from gateway.cameras.snapshot import fetch_snapshot as fetch_snapshot
from gateway.cameras.soap import SoapClient
from gateway.cameras.soap11 import SoapVersion
from gateway.cameras.tls import TlsPolicy, from_aiohttp, https_hint
from gateway.urls import fix_host as fix_host
from gateway.urls import strip_credentials as strip_credentials
from gateway.urls import with_credentials as with_credentials

log = logging.getLogger(__name__)

_T = TypeVar("_T")


class _Camera(onvif.ONVIFCamera):
    """The library's camera with every service guarded (see ``guard.guard_transport``)."""

    label = ""
    soap_version: SoapVersion | None = None  # set per camera by OnvifClient
    tls: TlsPolicy | None = None  # set per camera by OnvifClient

    async def create_onvif_service(self, name: str, *args: Any, **kwargs: Any) -> Any:
        service = await super().create_onvif_service(name, *args, **kwargs)
        guard_transport(service, self.label, self.user, self.passwd, self.soap_version, self.tls)
        return service


class OnvifClient:
    """One camera's ONVIF services. ``async with OnvifClient(...) as c: await c.probe()``.

    ``https``: the device service is ``https://host:port/onvif/device_service``; its
    certificate is checked by ``tls`` first (see :mod:`gateway.cameras.tls`), and
    every request (also to https XAddrs of a plain-HTTP camera) is checked the same way.
    """

    def __init__(
        self,
        host: str,
        port: int = 80,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        label: str | None = None,
        https: bool = False,
        tls: TlsPolicy | None = None,
    ) -> None:
        self.host = host
        self.https = https
        self.tls = tls or TlsPolicy()
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.label = label or f"{host}:{port}"
        self._cam: _Camera | None = None
        self._connected = False
        self.clock_offset_s: float | None = None
        self.soap_version = SoapVersion()  # 1.1 once the device shows it speaks only that

    async def __aenter__(self) -> OnvifClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self, what: str, fn: Callable[[], Awaitable[_T]], *, network: bool = True
    ) -> _T:
        """Run one request with the timeout and turn every failure into our errors.

        ``network=False`` is for building a service client (loading its WSDL from
        disk the first time can take a while on a slow box): no timeout then.
        """
        try:
            async with asyncio.timeout(self.timeout if network else None):
                return await fn()
        except OnvifError:
            raise
        except TimeoutError:
            raise UnreachableError(
                f"{self.label}: no answer to {what} within {self.timeout:g} s"
            ) from None
        except zeep.exceptions.Fault as err:
            if is_auth_error(err):
                raise AuthError(f"authentication failed for {self.label}") from None
            raise OnvifError(
                f"{self.label}: {what} failed: {stringify_onvif_error(err)[:300]}"
            ) from None
        except zeep.exceptions.TransportError as err:
            if err.status_code in (401, 403):
                raise AuthError(f"authentication failed for {self.label}") from None
            raise OnvifError(f"{self.label}: {what} failed: HTTP {err.status_code}") from None
        except ONVIFAuthError:
            raise AuthError(f"authentication failed for {self.label}") from None
        except ONVIFTimeoutError:
            raise UnreachableError(f"{self.label}: {what} timed out") from None
        except ONVIFError as err:
            cause = err.__cause__ or err
            if isinstance(cause, aiohttp.ClientError):
                raise self._client_error(what, cause) from None
            if isinstance(cause, OSError):
                raise UnreachableError(f"cannot reach {self.label}: {cause}") from None
            raise OnvifError(f"{self.label}: {what} failed: {cause}") from None
        except aiohttp.ClientError as err:
            raise self._client_error(what, err) from None
        except OSError as err:
            raise UnreachableError(f"cannot reach {self.label}: {err}") from None
        except zeep.exceptions.Error as err:
            raise OnvifError(f"{self.label}: {what} failed: {err}") from None
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as err:
            # A reply that parsed but does not have the shape the spec promises.
            raise OnvifError(f"{self.label}: unexpected reply to {what} ({err})") from None

    def _client_error(self, what: str, err: aiohttp.ClientError) -> OnvifError:
        certificate = from_aiohttp(self.label, err)
        if certificate is not None:
            return certificate
        if isinstance(err, aiohttp.ClientConnectionError):
            return UnreachableError(f"cannot reach {self.label}: {err}")
        return OnvifError(f"{self.label}: {what} failed: {err}")

    async def connect(self) -> None:
        """Measure the clock offset and find the device's services."""
        if self._connected:
            return
        try:
            await self._connect()
        except (UnreachableError, OnvifError) as err:
            await self.close()  # __aexit__ does not run when __aenter__ fails
            if self.https or isinstance(err, AuthError) or "no answer" in str(err):
                raise
            hint = await https_hint(self.label, self.host, self.port, min(self.timeout, 10.0))
            if hint is None:
                raise
            raise hint from None
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> None:
        host = self.host
        if self.https:
            await self.tls.check_peer(self.label, self.host, self.port, self.timeout)
            host = f"https://[{self.host}]" if ":" in self.host else f"https://{self.host}"
        cam = _Camera(host, self.port, self.username, self.password, adjust_time=True)
        cam.label = self.label
        cam.soap_version = self.soap_version
        cam.tls = self.tls
        self._cam = cam
        await self._call("device service", cam.create_devicemgmt_service, network=False)
        try:
            await self._call("GetServices", cam.update_xaddrs)
        except AuthError:
            if cam.dt_diff is not None:
                raise
            # Some devices (Axis, some NVRs) refuse even GetSystemDateAndTime without
            # credentials: skip the clock step rather than fail.
            cam.adjust_time = False
            await self._call("GetServices", cam.update_xaddrs)
        if cam.dt_diff is not None:
            self.clock_offset_s = cam.dt_diff.total_seconds()
            if abs(self.clock_offset_s) > 5:
                log.info("%s: camera clock is %.0f s off ours", self.label, self.clock_offset_s)
        cam.xaddrs = {ns: fix_host(x, self.host) for ns, x in cam.xaddrs.items()}
        self._connected = True

    async def close(self) -> None:
        cam, self._cam, self._connected = self._cam, None, False
        if cam is not None:
            try:
                await within(cam.close(), 2)
            except Exception as err:  # closing must never mask the real outcome
                log.debug("%s: closing the ONVIF client failed: %s", self.label, err)

    def _require(self) -> _Camera:
        if self._cam is None or not self._connected:
            raise OnvifError(f"{self.label}: not connected")
        return self._cam

    async def device_info(self) -> DeviceInfo:
        cam = self._require()
        dm = await self._call("device service", cam.create_devicemgmt_service, network=False)
        info = await self._call("GetDeviceInformation", dm.GetDeviceInformation)
        return DeviceInfo(
            manufacturer=str(getattr(info, "Manufacturer", "") or "")[:128],
            model=str(getattr(info, "Model", "") or "")[:128],
            firmware=str(getattr(info, "FirmwareVersion", "") or "")[:128],
            serial=str(getattr(info, "SerialNumber", "") or "")[:128],
            hardware_id=str(getattr(info, "HardwareId", "") or "")[:128],
            clock_offset_s=self.clock_offset_s,
        )

    async def _media(self) -> Any:
        cam = self._require()
        return await self._call("media service", cam.create_media_service, network=False)

    async def profiles(self) -> list[Profile]:
        """Media profiles with video, without stream URIs (see :meth:`stream_uri`)."""
        media = await self._media()
        raw = await self._call("GetProfiles", media.GetProfiles)
        out = []
        for p in raw or []:
            profile = from_media1(p)
            if profile is not None:
                out.append(profile)
        return out

    async def stream_uri(self, token: str) -> str:
        media = await self._media()
        request = {
            "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
            "ProfileToken": token,
        }
        result = await self._call("GetStreamUri", lambda: media.GetStreamUri(request))
        uri = str(result.Uri or "")
        if not uri.lower().startswith(("rtsp://", "rtsps://")):
            raise OnvifError(f"{self.label}: GetStreamUri gave no RTSP URI for {token}")
        return strip_credentials(fix_host(uri, self.host))[0]

    async def snapshot_uri(self, token: str) -> str | None:
        media = await self._media()
        try:
            result = await self._call(
                "GetSnapshotUri", lambda: media.GetSnapshotUri({"ProfileToken": token})
            )
        except (AuthError, UnreachableError):
            raise
        except OnvifError as err:
            log.info("%s: no snapshot URI: %s", self.label, err)
            return None
        uri = str(getattr(result, "Uri", "") or "")
        if not uri.lower().startswith(("http://", "https://")):
            return None
        return strip_credentials(fix_host(uri, self.host))[0]

    async def probe(self) -> ProbeResult:
        """Device info, every video profile with its stream URI, the snapshot URI.

        Through Media2 where the device lists it (H.265 profiles are often only
        there), else, or when Media2 fails or lists no video, through Media1.
        """
        await self.connect()
        device = await self.device_info()
        found = await self._probe_media2() if self.services().get(TR2) else None
        if found is not None:
            profiles, snapshot = found
        else:
            profiles = await self.profiles()
            for p in profiles:
                p.stream_uri = await self.stream_uri(p.token)
            main = max(profiles, key=lambda p: p.width * p.height, default=None)
            snapshot = await self.snapshot_uri(main.token) if main else None
        has_ptz = self._has_service("ptz") and any(p.ptz for p in profiles)
        return ProbeResult(
            device=device,
            profiles=profiles,
            snapshot_uri=snapshot,
            ptz=has_ptz,
            services=self.services(),
        )

    async def _probe_media2(self) -> tuple[list[Profile], str | None] | None:
        """Profiles (with stream URIs) and the snapshot URI by Media2; None to use Media1."""
        soap = SoapClient(
            self.label,
            self.username,
            self.password,
            clock_offset_s=self.clock_offset_s or 0.0,
            timeout=self.timeout,
            version=self.soap_version,
            tls=self.tls,
        )
        media = Media2(soap, self.services()[TR2])
        try:
            read = await media.profiles()
            profiles = [Profile(**fields, service="media2") for fields in read]
            if not profiles:
                log.info("%s: Media2 lists no video profile; using Media1", self.label)
                return None
            for p in profiles:
                uri = await media.stream_uri(p.token)
                if not uri.lower().startswith(("rtsp://", "rtsps://")):
                    raise OnvifError(f"{self.label}: Media2 gave no RTSP URI for {p.token}")
                p.stream_uri = strip_credentials(fix_host(uri, self.host))[0]
            main = max(profiles, key=lambda p: p.width * p.height)
            snapshot: str | None = None
            try:
                uri = await media.snapshot_uri(main.token)
                if uri.lower().startswith(("http://", "https://")):
                    snapshot = strip_credentials(fix_host(uri, self.host))[0]
            except (AuthError, UnreachableError):
                raise
            except OnvifError as err:
                log.info("%s: no snapshot URI: %s", self.label, err)
            return profiles, snapshot
        except (AuthError, UnreachableError):
            raise
        except OnvifError as err:
            log.info("%s: Media2 failed (%s); using Media1", self.label, err)
            return None
        finally:
            await soap.close()

    def services(self) -> dict[str, str]:
        """The device's services (namespace → address), from GetServices or GetCapabilities."""
        return dict(self._require().xaddrs)

    def _has_service(self, name: str) -> bool:
        from onvif.definition import SERVICES

        cam = self._require()
        return SERVICES[name]["ns"] in cam.xaddrs

    async def _ptz(self) -> Any:
        if not self._has_service("ptz"):
            raise OnvifError(f"{self.label}: the camera has no PTZ service")
        cam = self._require()
        return await self._call("PTZ service", cam.create_ptz_service, network=False)

    async def ptz_move(self, token: str, pan: float, tilt: float, zoom: float) -> None:
        """Continuous move at the given velocities (-1..1) until :meth:`ptz_stop`."""
        ptz = await self._ptz()
        request = {
            "ProfileToken": token,
            "Velocity": {"PanTilt": {"x": pan, "y": tilt}, "Zoom": {"x": zoom}},
        }
        await self._call("ContinuousMove", lambda: ptz.ContinuousMove(request))

    async def ptz_stop(self, token: str) -> None:
        ptz = await self._ptz()
        request = {"ProfileToken": token, "PanTilt": True, "Zoom": True}
        await self._call("Stop", lambda: ptz.Stop(request))

    async def ptz_presets(self, token: str) -> list[dict[str, str]]:
        ptz = await self._ptz()
        presets = await self._call("GetPresets", lambda: ptz.GetPresets({"ProfileToken": token}))
        return [
            {"token": str(p.token), "name": str(getattr(p, "Name", "") or "")}
            for p in presets or []
            if getattr(p, "token", None)
        ]

    async def ptz_goto(self, token: str, preset: str) -> None:
        ptz = await self._ptz()
        request = {"ProfileToken": token, "PresetToken": preset}
        await self._call("GotoPreset", lambda: ptz.GotoPreset(request))

    async def ptz_set_preset(self, token: str, preset: str | None, name: str | None) -> str:
        """Store the current position (as ``preset``, or a new preset named ``name``)."""
        ptz = await self._ptz()
        request: dict[str, Any] = {"ProfileToken": token}
        if preset:
            request["PresetToken"] = preset
        if name:
            request["PresetName"] = name
        answer = await self._call("SetPreset", lambda: ptz.SetPreset(request))
        return str(answer or preset or "")

    async def ptz_remove_preset(self, token: str, preset: str) -> None:
        ptz = await self._ptz()
        request = {"ProfileToken": token, "PresetToken": preset}
        await self._call("RemovePreset", lambda: ptz.RemovePreset(request))
