"""ONVIF Media2 service (ver20 ``tr2:``) of the simulated camera.

Served when ``camera.media2`` is ``"on"`` or ``"h265-only"`` (``gateway sim
--media2``). Media2 names H.265 as it is (``tt:VideoEncoder2Configuration``'s
Encoding is a free string), so profiles, encoder configurations and stream URIs
here carry the real codec. With ``"h265-only"`` the H.265 profiles are left out of
Media1, as many cameras sold since 2020 do: only a Media2 client finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from gateway.sim.onvif_ptz import ptz_configuration_xml
from gateway.sim.onvif_soap import SoapFault, text_of, x, xa

VIDEO_SOURCE = "VideoSource_1"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"
MODES = ("off", "on", "h265-only")


def has_ptz(camera: Any) -> bool:
    return bool(getattr(camera, "ptz", None))


def enabled(camera: Any) -> bool:
    return getattr(camera, "media2", "off") in ("on", "h265-only")


def media1_profiles(camera: Any) -> list[Any]:
    """The profiles Media1 shows: all, or without H.265 when it lives in Media2 only."""
    if getattr(camera, "media2", "off") == "h265-only":
        return [p for p in camera.profiles if p.encoding != "H265"]
    return list(camera.profiles)


def _profile(camera: Any, token: str | None) -> Any:
    for profile in camera.profiles:
        if profile.token == token:
            return profile
    raise SoapFault("Sender", "ter:InvalidArgVal ter:NoProfile", f"no profile {token!r}")


def _encoder_xml(profile: Any, tag: str) -> str:
    gov = f' GovLength="{profile.gop}"' if profile.encoding in ("H264", "H265") else ""
    level = {"H264": "Main", "H265": "Main"}.get(profile.encoding)
    profile_attr = f' Profile="{level}"' if level else ""
    return (
        f"<{tag} token={xa('VideoEncoder2_' + profile.token)}{gov}{profile_attr}>"
        f"<tt:Name>{x(profile.name)}</tt:Name><tt:UseCount>1</tt:UseCount>"
        f"<tt:Encoding>{x(profile.encoding)}</tt:Encoding>"
        f"<tt:Resolution><tt:Width>{profile.width}</tt:Width>"
        f"<tt:Height>{profile.height}</tt:Height></tt:Resolution>"
        '<tt:RateControl ConstantBitRate="false">'
        f"<tt:FrameRateLimit>{profile.fps}</tt:FrameRateLimit>"
        f"<tt:BitrateLimit>{profile.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>"
        "<tt:Quality>4</tt:Quality></" + tag + ">"
    )


def _source_xml(camera: Any) -> str:
    main = max(camera.profiles, key=lambda p: p.width * p.height)
    return (
        f"<tr2:VideoSource token={xa(VIDEO_SOURCE_CONFIG)}><tt:Name>VideoSourceConfig</tt:Name>"
        f"<tt:UseCount>{len(camera.profiles)}</tt:UseCount>"
        f"<tt:SourceToken>{VIDEO_SOURCE}</tt:SourceToken>"
        f'<tt:Bounds x="0" y="0" width="{main.width}" height="{main.height}"/></tr2:VideoSource>'
    )


def get_profiles(camera: Any, op: etree._Element) -> str:
    token = text_of(op, "Token")
    types = {
        (t.text or "").strip() for t in op.iterchildren("*") if etree.QName(t).localname == "Type"
    }
    with_configs = bool(types & {"All", "VideoEncoder", "VideoSource"})
    chosen = [_profile(camera, token)] if token else camera.profiles
    body = []
    for p in chosen:
        configs = ""
        if with_configs:
            ptz = ptz_configuration_xml(camera, "tr2:PTZ") if has_ptz(camera) else ""
            configs = (
                f"<tr2:Configurations>{_source_xml(camera)}"
                f"{_encoder_xml(p, 'tr2:VideoEncoder')}{ptz}</tr2:Configurations>"
            )
        body.append(
            f'<tr2:Profiles token={xa(p.token)} fixed="true"><tr2:Name>{x(p.name)}</tr2:Name>'
            f"{configs}</tr2:Profiles>"
        )
    return f"<tr2:GetProfilesResponse>{''.join(body)}</tr2:GetProfilesResponse>"


def get_video_encoder_configurations(camera: Any, op: etree._Element) -> str:
    token = text_of(op, "ProfileToken")
    chosen = [_profile(camera, token)] if token else camera.profiles
    body = "".join(_encoder_xml(p, "tr2:Configurations") for p in chosen)
    return (
        f"<tr2:GetVideoEncoderConfigurationsResponse>{body}"
        "</tr2:GetVideoEncoderConfigurationsResponse>"
    )


def get_stream_uri(camera: Any, op: etree._Element) -> str:
    profile = _profile(camera, text_of(op, "ProfileToken"))
    protocol = text_of(op, "Protocol") or "RtspUnicast"
    if protocol not in ("RtspUnicast", "RTSP", "RtspOverHttp"):
        raise SoapFault(
            "Sender", "ter:InvalidArgVal ter:InvalidStreamSetup", f"protocol {protocol} unsupported"
        )
    uri = camera.rtsp_url(profile.token)
    return f"<tr2:GetStreamUriResponse><tr2:Uri>{x(uri)}</tr2:Uri></tr2:GetStreamUriResponse>"


def get_snapshot_uri(camera: Any, op: etree._Element) -> str:
    _profile(camera, text_of(op, "ProfileToken"))
    uri = f"{camera.http_scheme}://{camera.address}:{camera.http_port}/snapshot.jpg"
    return f"<tr2:GetSnapshotUriResponse><tr2:Uri>{x(uri)}</tr2:Uri></tr2:GetSnapshotUriResponse>"


def service_capabilities() -> str:
    return (
        '<tr2:Capabilities SnapshotUri="true" Rotation="false" VideoSourceMode="false" OSD="false">'
        '<tr2:ProfileCapabilities MaximumNumberOfProfiles="4" ConfigurationsSupported='
        '"VideoSource VideoEncoder"/><tr2:StreamingCapabilities RTSPStreaming="true" '
        'RTPMulticast="false" RTP_RTSP_TCP="true"/></tr2:Capabilities>'
    )


def get_service_capabilities(_camera: Any, _op: etree._Element) -> str:
    caps = service_capabilities()
    return f"<tr2:GetServiceCapabilitiesResponse>{caps}</tr2:GetServiceCapabilitiesResponse>"


def _guard(fn: Callable[[Any, etree._Element], str]) -> Callable[[Any, etree._Element], str]:
    def op(camera: Any, element: etree._Element) -> str:
        if not enabled(camera):
            raise SoapFault("Receiver", "ter:ActionNotSupported", "no Media2 service")
        return fn(camera, element)

    return op


OPERATIONS: dict[str, Callable[[Any, etree._Element], str]] = {
    name: _guard(fn)
    for name, fn in {
        "GetProfiles": get_profiles,
        "GetVideoEncoderConfigurations": get_video_encoder_configurations,
        "GetStreamUri": get_stream_uri,
        "GetSnapshotUri": get_snapshot_uri,
        "GetServiceCapabilities": get_service_capabilities,
    }.items()
}
