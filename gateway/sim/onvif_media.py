"""ONVIF media service (ver10 ``trt:``) of the simulated camera.

Media1 has no H.265 in its ``tt:VideoEncoding`` enumeration (JPEG, MPEG4, H264).
Strict clients (ONVIF Device Manager's .NET serializer) reject anything else, so
an H.265 profile is reported as ``H264`` without an ``H264`` element, as many
real cameras do: clients must read the codec from the RTSP stream, as the
gateway does. With ``camera.media2 == "h265-only"`` the H.265 profiles are only in
Media2 (``onvif_media2``). Every response here validates against the bundled ONVIF schemas
(see tests/test_sim_onvif.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree

from gateway.sim.onvif_device import has_ptz, media_service_capabilities
from gateway.sim.onvif_media2 import media1_profiles
from gateway.sim.onvif_ptz import ptz_configuration_xml
from gateway.sim.onvif_soap import SoapFault, text_of, x, xa

VIDEO_SOURCE = "VideoSource_1"
VIDEO_SOURCE_CONFIG = "VideoSourceConfig_1"


def _profile(camera: Any, token: str | None) -> Any:
    for profile in media1_profiles(camera):
        if profile.token == token:
            return profile
    raise SoapFault("Sender", "ter:InvalidArgVal ter:NoProfile", f"no profile {token!r}")


def _source_size(camera: Any) -> tuple[int, int]:
    main = max(camera.profiles, key=lambda p: p.width * p.height)
    return main.width, main.height


def _source_fps(camera: Any) -> int:
    return max(p.fps for p in camera.profiles)


def _encoder_token(profile: Any) -> str:
    return f"VideoEncoder_{profile.token}"


def _source_config_xml(camera: Any, tag: str) -> str:
    width, height = _source_size(camera)
    return (
        f"<{tag} token={xa(VIDEO_SOURCE_CONFIG)}><tt:Name>VideoSourceConfig</tt:Name>"
        f"<tt:UseCount>{len(camera.profiles)}</tt:UseCount>"
        f"<tt:SourceToken>{VIDEO_SOURCE}</tt:SourceToken>"
        f'<tt:Bounds x="0" y="0" width="{width}" height="{height}"/></{tag}>'
    )


def _encoder_config_xml(profile: Any, tag: str) -> str:
    encoding = "JPEG" if profile.encoding == "JPEG" else "H264"
    h264 = (
        f"<tt:H264><tt:GovLength>{profile.gop}</tt:GovLength>"
        "<tt:H264Profile>Main</tt:H264Profile></tt:H264>"
        if profile.encoding == "H264"
        else ""
    )
    return (
        f"<{tag} token={xa(_encoder_token(profile))}><tt:Name>{x(profile.name)}</tt:Name>"
        f"<tt:UseCount>1</tt:UseCount><tt:Encoding>{encoding}</tt:Encoding>"
        f"<tt:Resolution><tt:Width>{profile.width}</tt:Width>"
        f"<tt:Height>{profile.height}</tt:Height></tt:Resolution>"
        "<tt:Quality>4</tt:Quality>"
        f"<tt:RateControl><tt:FrameRateLimit>{profile.fps}</tt:FrameRateLimit>"
        "<tt:EncodingInterval>1</tt:EncodingInterval>"
        f"<tt:BitrateLimit>{profile.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>{h264}"
        "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type>"
        "<tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address><tt:Port>0</tt:Port>"
        "<tt:TTL>0</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
        f"<tt:SessionTimeout>PT60S</tt:SessionTimeout></{tag}>"
    )


def _profile_xml(camera: Any, profile: Any, tag: str) -> str:
    ptz = ptz_configuration_xml(camera, "tt:PTZConfiguration") if has_ptz(camera) else ""
    return (
        f'<{tag} token={xa(profile.token)} fixed="true"><tt:Name>{x(profile.name)}</tt:Name>'
        f"{_source_config_xml(camera, 'tt:VideoSourceConfiguration')}"
        f"{_encoder_config_xml(profile, 'tt:VideoEncoderConfiguration')}{ptz}</{tag}>"
    )


def get_profiles(camera: Any, _op: etree._Element) -> str:
    body = "".join(_profile_xml(camera, p, "trt:Profiles") for p in media1_profiles(camera))
    return f"<trt:GetProfilesResponse>{body}</trt:GetProfilesResponse>"


def get_profile(camera: Any, op: etree._Element) -> str:
    profile = _profile(camera, text_of(op, "ProfileToken"))
    return (
        f"<trt:GetProfileResponse>{_profile_xml(camera, profile, 'trt:Profile')}"
        "</trt:GetProfileResponse>"
    )


def _media_uri(tag: str, uri: str) -> str:
    return (
        f"<{tag}Response><trt:MediaUri><tt:Uri>{x(uri)}</tt:Uri>"
        "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
        f"<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></{tag}Response>"
    )


def get_stream_uri(camera: Any, op: etree._Element) -> str:
    profile = _profile(camera, text_of(op, "ProfileToken"))
    stream = text_of(op, "StreamSetup", "Stream") or "RTP-Unicast"
    protocol = text_of(op, "StreamSetup", "Transport", "Protocol") or "RTSP"
    # Only unicast RTSP is served (RTP over RTSP, UDP or TCP interleaved).
    if stream != "RTP-Unicast" or protocol not in ("RTSP", "UDP", "TCP"):
        raise SoapFault(
            "Sender",
            "ter:InvalidArgVal ter:InvalidStreamSetup",
            f"stream setup {stream}/{protocol} not supported; use RTP-Unicast/RTSP",
        )
    # The URI carries no credentials, as with real cameras.
    return _media_uri("trt:GetStreamUri", camera.rtsp_url(profile.token))


def get_snapshot_uri(camera: Any, op: etree._Element) -> str:
    _profile(camera, text_of(op, "ProfileToken"))
    uri = f"{camera.http_scheme}://{camera.address}:{camera.http_port}/snapshot.jpg"
    return _media_uri("trt:GetSnapshotUri", uri)


def get_video_sources(camera: Any, _op: etree._Element) -> str:
    width, height = _source_size(camera)
    return (
        f"<trt:GetVideoSourcesResponse><trt:VideoSources token={xa(VIDEO_SOURCE)}>"
        f"<tt:Framerate>{_source_fps(camera)}</tt:Framerate><tt:Resolution>"
        f"<tt:Width>{width}</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>"
        "</trt:VideoSources></trt:GetVideoSourcesResponse>"
    )


def get_video_source_configurations(camera: Any, _op: etree._Element) -> str:
    body = _source_config_xml(camera, "trt:Configurations")
    return (
        f"<trt:GetVideoSourceConfigurationsResponse>{body}"
        "</trt:GetVideoSourceConfigurationsResponse>"
    )


def get_video_encoder_configurations(camera: Any, _op: etree._Element) -> str:
    body = "".join(_encoder_config_xml(p, "trt:Configurations") for p in media1_profiles(camera))
    return (
        f"<trt:GetVideoEncoderConfigurationsResponse>{body}"
        "</trt:GetVideoEncoderConfigurationsResponse>"
    )


def get_video_encoder_configuration(camera: Any, op: etree._Element) -> str:
    token = text_of(op, "ConfigurationToken")
    for profile in media1_profiles(camera):
        if _encoder_token(profile) == token:
            body = _encoder_config_xml(profile, "trt:Configuration")
            return (
                f"<trt:GetVideoEncoderConfigurationResponse>{body}"
                "</trt:GetVideoEncoderConfigurationResponse>"
            )
    raise SoapFault("Sender", "ter:InvalidArgVal ter:NoConfig", f"no configuration {token!r}")


def get_service_capabilities(camera: Any, _op: etree._Element) -> str:
    return (
        f"<trt:GetServiceCapabilitiesResponse>{media_service_capabilities()}"
        "</trt:GetServiceCapabilitiesResponse>"
    )


OPERATIONS: dict[str, Callable[[Any, etree._Element], str]] = {
    "GetProfiles": get_profiles,
    "GetProfile": get_profile,
    "GetStreamUri": get_stream_uri,
    "GetSnapshotUri": get_snapshot_uri,
    "GetVideoSources": get_video_sources,
    "GetVideoSourceConfigurations": get_video_source_configurations,
    "GetVideoEncoderConfigurations": get_video_encoder_configurations,
    "GetVideoEncoderConfiguration": get_video_encoder_configuration,
    "GetServiceCapabilities": get_service_capabilities,
}
