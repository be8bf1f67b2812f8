"""ONVIF device service (ver10 ``tds:``) of the simulated camera.

Each operation is ``fn(camera, request_element) -> str`` returning the response
element's markup; the server wraps it in an envelope.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from lxml import etree

from gateway.sim import onvif_media2
from gateway.sim.onvif_soap import TDS, TEV, TPTZ, TR2, TRT, SoapFault, text_of, utc_datetime_xml, x

# The ONVIF version the simulator claims, in GetServices and GetCapabilities.
VERSION = (2, 60)


def xaddr(camera: Any, service: str) -> str:
    """The URL of one service (``device_service``, ``media_service``, ``ptz_service``)."""
    return f"{camera.http_scheme}://{camera.address}:{camera.http_port}/onvif/{service}"


def has_ptz(camera: Any) -> bool:
    return bool(getattr(camera, "ptz", None))


def has_events(camera: Any) -> bool:
    return bool(getattr(camera, "events", True))


def scopes(camera: Any) -> list[str]:
    """The ONVIF scope URIs, shared with the WS-Discovery responder."""
    base = "onvif://www.onvif.org"
    out = [
        f"{base}/type/video_encoder",
        f"{base}/type/Network_Video_Transmitter",
        f"{base}/Profile/Streaming",
        f"{base}/name/{quote(str(camera.name), safe='')}",
        f"{base}/location/{quote(str(camera.location), safe='')}",
        f"{base}/hardware/{quote(str(camera.hardware), safe='')}",
    ]
    if has_ptz(camera):
        out.insert(1, f"{base}/type/ptz")
    return out


def _version() -> str:
    major, minor = VERSION
    return f"<tds:Version><tt:Major>{major}</tt:Major><tt:Minor>{minor}</tt:Minor></tds:Version>"


def get_system_date_and_time(camera: Any, _op: etree._Element) -> str:
    # clock_offset_s lets tests give the camera a wrong clock that clients must
    # measure and compensate in their WS-Security Created stamps.
    now = time.time() + float(getattr(camera, "clock_offset_s", 0) or 0)
    stamp = utc_datetime_xml(now)
    return (
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
        "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
        "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
        f"<tt:UTCDateTime>{stamp}</tt:UTCDateTime><tt:LocalDateTime>{stamp}</tt:LocalDateTime>"
        "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )


def get_device_information(camera: Any, _op: etree._Element) -> str:
    return (
        "<tds:GetDeviceInformationResponse>"
        f"<tds:Manufacturer>{x(camera.manufacturer)}</tds:Manufacturer>"
        f"<tds:Model>{x(camera.model)}</tds:Model>"
        f"<tds:FirmwareVersion>{x(camera.firmware)}</tds:FirmwareVersion>"
        f"<tds:SerialNumber>{x(camera.serial)}</tds:SerialNumber>"
        f"<tds:HardwareId>{x(camera.hardware)}</tds:HardwareId>"
        "</tds:GetDeviceInformationResponse>"
    )


def _device_caps_xml(camera: Any) -> str:
    return (
        f"<tt:Device><tt:XAddr>{x(xaddr(camera, 'device_service'))}</tt:XAddr>"
        "<tt:Network><tt:IPFilter>false</tt:IPFilter><tt:ZeroConfiguration>false"
        "</tt:ZeroConfiguration><tt:IPVersion6>false</tt:IPVersion6>"
        "<tt:DynDNS>false</tt:DynDNS></tt:Network>"
        "<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve>"
        "<tt:DiscoveryBye>true</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery>"
        "<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>false</tt:SystemLogging>"
        "<tt:FirmwareUpgrade>false</tt:FirmwareUpgrade><tt:SupportedVersions>"
        f"<tt:Major>{VERSION[0]}</tt:Major><tt:Minor>{VERSION[1]}</tt:Minor>"
        "</tt:SupportedVersions></tt:System>"
        "<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>"
        "<tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration>"
        "<tt:AccessPolicyConfig>false</tt:AccessPolicyConfig><tt:X.509Token>false</tt:X.509Token>"
        "<tt:SAMLToken>false</tt:SAMLToken><tt:KerberosToken>false</tt:KerberosToken>"
        "<tt:RELToken>false</tt:RELToken></tt:Security></tt:Device>"
    )


def _media_caps_xml(camera: Any) -> str:
    return (
        f"<tt:Media><tt:XAddr>{x(xaddr(camera, 'media_service'))}</tt:XAddr>"
        "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
        "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
        "</tt:StreamingCapabilities></tt:Media>"
    )


def get_capabilities(camera: Any, op: etree._Element) -> str:
    categories = {
        (c.text or "").strip()
        for c in op.iterchildren("*")
        if etree.QName(c).localname == "Category"
    } or {"All"}
    parts = {
        "Device": _device_caps_xml(camera),
        "Events": (
            f"<tt:Events><tt:XAddr>{x(xaddr(camera, 'event_service'))}</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>false</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
            "</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
            if has_events(camera)
            else ""
        ),
        "Media": _media_caps_xml(camera),
        "PTZ": (
            f"<tt:PTZ><tt:XAddr>{x(xaddr(camera, 'ptz_service'))}</tt:XAddr></tt:PTZ>"
            if has_ptz(camera)
            else ""
        ),
    }
    if "All" not in categories and not all(parts.get(c) for c in categories):
        raise SoapFault(
            "Receiver", "ter:ActionNotSupported ter:NoSuchService", "capability not supported"
        )
    body = "".join(v for k, v in parts.items() if "All" in categories or k in categories)
    return (
        f"<tds:GetCapabilitiesResponse><tds:Capabilities>{body}</tds:Capabilities>"
        "</tds:GetCapabilitiesResponse>"
    )


def device_service_capabilities() -> str:
    return (
        '<tds:Capabilities><tds:Network IPFilter="false" ZeroConfiguration="false" '
        'IPVersion6="false" DynDNS="false"/>'
        '<tds:Security UsernameToken="true" HttpDigest="true"/>'
        '<tds:System DiscoveryBye="true" DiscoveryResolve="false"/></tds:Capabilities>'
    )


def media_service_capabilities() -> str:
    return (
        '<trt:Capabilities SnapshotUri="true">'
        '<trt:ProfileCapabilities MaximumNumberOfProfiles="4"/>'
        '<trt:StreamingCapabilities RTPMulticast="false" RTP_TCP="true" RTP_RTSP_TCP="true"/>'
        "</trt:Capabilities>"
    )


def events_service_capabilities() -> str:
    return (
        '<tev:Capabilities WSSubscriptionPolicySupport="false" WSPullPointSupport="true" '
        'WSPausableSubscriptionManagerInterfaceSupport="false"/>'
    )


def ptz_service_capabilities() -> str:
    return '<tptz:Capabilities EFlip="false" Reverse="false"/>'


def get_services(camera: Any, op: etree._Element) -> str:
    include = (text_of(op, "IncludeCapability") or "false").lower() in ("true", "1")
    services = [
        (TDS, "device_service", device_service_capabilities()),
        (TRT, "media_service", media_service_capabilities()),
    ]
    if onvif_media2.enabled(camera):
        services.append((TR2, "media2_service", onvif_media2.service_capabilities()))
    if has_events(camera):
        services.append((TEV, "event_service", events_service_capabilities()))
    if has_ptz(camera):
        services.append((TPTZ, "ptz_service", ptz_service_capabilities()))
    body = "".join(
        f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
        f"<tds:XAddr>{x(xaddr(camera, path))}</tds:XAddr>"
        + (f"<tds:Capabilities>{caps}</tds:Capabilities>" if include else "")
        + f"{_version()}</tds:Service>"
        for ns, path, caps in services
    )
    return f"<tds:GetServicesResponse>{body}</tds:GetServicesResponse>"


def get_service_capabilities(camera: Any, _op: etree._Element) -> str:
    return (
        f"<tds:GetServiceCapabilitiesResponse>{device_service_capabilities()}"
        "</tds:GetServiceCapabilitiesResponse>"
    )


def get_scopes(camera: Any, _op: etree._Element) -> str:
    body = "".join(
        f"<tds:Scopes><tt:ScopeDef>Fixed</tt:ScopeDef><tt:ScopeItem>{x(s)}</tt:ScopeItem></tds:Scopes>"
        for s in scopes(camera)
    )
    return f"<tds:GetScopesResponse>{body}</tds:GetScopesResponse>"


def get_network_interfaces(camera: Any, _op: etree._Element) -> str:
    # A stable, locally administered MAC derived from the camera index.
    mac = f"02:00:00:00:{(camera.index >> 8) & 0xFF:02x}:{camera.index & 0xFF:02x}"
    return (
        '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
        "<tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name>"
        f"<tt:HwAddress>{mac}</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>"
        "<tt:IPv4><tt:Enabled>true</tt:Enabled><tt:Config><tt:Manual>"
        f"<tt:Address>{x(camera.address)}</tt:Address><tt:PrefixLength>8</tt:PrefixLength>"
        "</tt:Manual><tt:DHCP>false</tt:DHCP></tt:Config></tt:IPv4>"
        "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
    )


def get_hostname(camera: Any, _op: etree._Element) -> str:
    return (
        "<tds:GetHostnameResponse><tds:HostnameInformation><tt:FromDHCP>false</tt:FromDHCP>"
        f"<tt:Name>{x(camera.id)}</tt:Name></tds:HostnameInformation></tds:GetHostnameResponse>"
    )


def get_endpoint_reference(camera: Any, _op: etree._Element) -> str:
    return (
        f"<tds:GetEndpointReferenceResponse><tds:GUID>{x(camera.endpoint)}</tds:GUID>"
        "</tds:GetEndpointReferenceResponse>"
    )


OPERATIONS: dict[str, Callable[[Any, etree._Element], str]] = {
    "GetSystemDateAndTime": get_system_date_and_time,
    "GetDeviceInformation": get_device_information,
    "GetCapabilities": get_capabilities,
    "GetServices": get_services,
    "GetServiceCapabilities": get_service_capabilities,
    "GetScopes": get_scopes,
    "GetNetworkInterfaces": get_network_interfaces,
    "GetHostname": get_hostname,
    "GetEndpointReference": get_endpoint_reference,
}
