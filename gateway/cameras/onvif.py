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
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import onvif
import zeep.exceptions
from onvif.exceptions import ONVIFAuthError, ONVIFError, ONVIFTimeoutError
from onvif.util import is_auth_error, stringify_onvif_error

from gateway.cameras import wsd

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
_T = TypeVar("_T")


class OnvifError(Exception):
    """An ONVIF request failed; the message names the camera and the operation."""


class AuthError(OnvifError):
    """The camera refused our credentials."""


class UnreachableError(OnvifError):
    """No answer: connection refused, no route, or timed out."""


@dataclass
class DeviceInfo:
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    hardware_id: str = ""
    clock_offset_s: float | None = None


@dataclass
class Profile:
    """One media profile: a stream the camera offers."""

    token: str
    name: str = ""
    encoding: str = ""
    width: int = 0
    height: int = 0
    fps: float | None = None
    gop: int | None = None
    bitrate_kbps: int | None = None
    stream_uri: str = ""
    ptz: bool = False

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProbeResult:
    device: DeviceInfo
    profiles: list[Profile] = field(default_factory=list)
    snapshot_uri: str | None = None
    ptz: bool = False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def fix_host(url: str, host: str) -> str:
    """Put ``host`` into ``url`` when the URL names an IP other than ``host``.

    Cameras report ``0.0.0.0``, a loopback address, their address behind NAT, or a
    stale DHCP address in XAddrs and stream URIs; the address we reached them at
    is the one that works. DNS names in the URL are kept.
    """
    try:
        parts = urlsplit(url)
        url_host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return url
    if not url_host or url_host == host or not _is_ip(url_host):
        return url
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc = f"{netloc}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``rtsp://host/x`` → ``rtsp://user:pass@host/x``, URL-encoded; replaces existing ones."""
    if not username:
        return url
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    cred = quote(username, safe="")
    if password is not None:
        cred += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{cred}@{hostport}", parts.path, parts.query, parts.fragment))


def strip_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``scheme://u:p@h/x`` → (``scheme://h/x``, u, p) with u and p URL-decoded."""
    from urllib.parse import unquote

    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if colon else None


def _guard_transport(service: Any, label: str) -> None:
    """Replace the service's HTTP read with a bounded one that checks the XML first.

    The library reads the whole body and lets zeep parse it leniently
    (``recover=True``, ``xml_huge_tree=True``); a hostile or broken camera must get
    a clear rejection instead.
    """
    transport = service.transport
    if getattr(transport, "_gateway_guarded", False):
        return

    async def bounded_post(address: str, message: str | bytes, headers: dict[str, str]):
        headers = dict(headers or {})
        headers.setdefault("Content-Type", 'text/xml; charset="utf-8"')
        data = message.encode("utf-8") if isinstance(message, str) else message
        response = await transport.session.post(
            address, data=data, headers=headers, timeout=transport._client_timeout
        )
        try:
            if response.status in (401, 403):
                raise AuthError(f"authentication failed for {label} (HTTP {response.status})")
            if (response.content_length or 0) > MAX_REPLY_BYTES:
                raise OnvifError(f"{label}: rejected reply: oversize ({response.content_length} B)")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(65536):
                size += len(chunk)
                if size > MAX_REPLY_BYTES:
                    raise OnvifError(f"{label}: rejected reply: oversize (> {MAX_REPLY_BYTES} B)")
                chunks.append(chunk)
            content = b"".join(chunks)
        finally:
            response.release()
        if content.strip():
            try:
                wsd.safe_parse(content, MAX_REPLY_BYTES)
            except wsd.WsdRejected as err:
                log.warning("%s: rejected a SOAP reply from %s: %s", label, address, err)
                raise OnvifError(f"{label}: rejected reply: {err}") from None
        return response, content

    transport._post_internal = bounded_post
    transport._gateway_guarded = True


class _Camera(onvif.ONVIFCamera):
    """The library's camera with every service guarded (see :func:`_guard_transport`)."""

    label = ""

    async def create_onvif_service(self, name: str, *args: Any, **kwargs: Any) -> Any:
        service = await super().create_onvif_service(name, *args, **kwargs)
        _guard_transport(service, self.label)
        return service


class OnvifClient:
    """One camera's ONVIF services. ``async with OnvifClient(...) as c: await c.probe()``."""

    def __init__(
        self,
        host: str,
        port: int = 80,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        label: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout = timeout
        self.label = label or f"{host}:{port}"
        self._cam: _Camera | None = None
        self._connected = False
        self.clock_offset_s: float | None = None

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
            if isinstance(cause, aiohttp.ClientConnectionError | OSError):
                raise UnreachableError(f"cannot reach {self.label}: {cause}") from None
            raise OnvifError(f"{self.label}: {what} failed: {cause}") from None
        except (aiohttp.ClientConnectionError, OSError) as err:
            raise UnreachableError(f"cannot reach {self.label}: {err}") from None
        except (aiohttp.ClientError, zeep.exceptions.Error) as err:
            raise OnvifError(f"{self.label}: {what} failed: {err}") from None
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as err:
            # A reply that parsed but does not have the shape the spec promises.
            raise OnvifError(f"{self.label}: unexpected reply to {what} ({err})") from None

    async def connect(self) -> None:
        """Measure the clock offset and find the device's services."""
        if self._connected:
            return
        try:
            await self._connect()
        except BaseException:
            await self.close()  # __aexit__ does not run when __aenter__ fails
            raise

    async def _connect(self) -> None:
        cam = _Camera(self.host, self.port, self.username, self.password, adjust_time=True)
        cam.label = self.label
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
                await asyncio.wait_for(cam.close(), 2)
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
            profile = _profile(p)
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
        """Device info, every video profile with its stream URI, the snapshot URI."""
        await self.connect()
        device = await self.device_info()
        profiles = await self.profiles()
        for p in profiles:
            p.stream_uri = await self.stream_uri(p.token)
        main = max(profiles, key=lambda p: p.width * p.height, default=None)
        snapshot = await self.snapshot_uri(main.token) if main else None
        has_ptz = self._has_service("ptz") and any(p.ptz for p in profiles)
        return ProbeResult(device=device, profiles=profiles, snapshot_uri=snapshot, ptz=has_ptz)

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


def _get(obj: Any, *path: str) -> Any:
    for name in path:
        if obj is None:
            return None
        obj = getattr(obj, name, None)
    return obj


def _profile(p: Any) -> Profile | None:
    token = getattr(p, "token", None)
    encoder = getattr(p, "VideoEncoderConfiguration", None)
    if not token or encoder is None:
        return None  # audio-only or metadata profiles: not a video stream
    fps = _get(encoder, "RateControl", "FrameRateLimit")
    bitrate = _get(encoder, "RateControl", "BitrateLimit")
    gop = _get(encoder, "H264", "GovLength") or _get(encoder, "MPEG4", "GovLength")
    return Profile(
        token=str(token)[:64],
        name=str(getattr(p, "Name", "") or "")[:128],
        encoding=str(getattr(encoder, "Encoding", "") or "")[:16],
        width=int(_get(encoder, "Resolution", "Width") or 0),
        height=int(_get(encoder, "Resolution", "Height") or 0),
        fps=float(fps) if fps else None,
        gop=int(gop) if gop else None,
        bitrate_kbps=int(bitrate) if bitrate else None,
        ptz=getattr(p, "PTZConfiguration", None) is not None,
    )


async def fetch_snapshot(
    url: str,
    username: str | None,
    password: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = 8 * 1024 * 1024,
) -> bytes:
    """GET a snapshot URI with HTTP digest or basic auth (whichever the camera asks)."""
    import httpx

    auth: httpx.Auth | None = None
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        try:
            for _ in range(2):
                async with client.stream("GET", url, auth=auth) as resp:
                    if resp.status_code == 401 and auth is None and username:
                        challenge = resp.headers.get("www-authenticate", "").lower()
                        auth = (
                            httpx.DigestAuth(username, password or "")
                            if challenge.startswith("digest")
                            else httpx.BasicAuth(username, password or "")
                        )
                        continue
                    if resp.status_code in (401, 403):
                        raise AuthError(f"authentication failed for snapshot at {_host(url)}")
                    if resp.status_code != 200:
                        raise OnvifError(f"snapshot at {_host(url)}: HTTP {resp.status_code}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise OnvifError(f"snapshot at {_host(url)} is too large")
                    if not body.startswith(b"\xff\xd8"):
                        raise OnvifError(f"snapshot at {_host(url)} is not a JPEG")
                    return bytes(body)
        except httpx.TimeoutException:
            raise UnreachableError(f"snapshot at {_host(url)}: timed out") from None
        except httpx.HTTPError as err:
            raise UnreachableError(f"snapshot at {_host(url)}: {err}") from None
    raise AuthError(f"authentication failed for snapshot at {_host(url)}")


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return "?"
