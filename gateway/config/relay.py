"""Settings for serving viewers: WebRTC relay, ICE servers, SFU and WHIP out."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
)

from gateway.config.base import Model


class IceServer(Model):
    urls: list[str] = Field(title="STUN/TURN URLs")
    username: str | None = Field(None, title="TURN user")
    credential: SecretStr | None = Field(None, title="TURN credential")


class SfuSettings(Model):
    """An existing SFU (Janus's streaming plugin) that serves the viewers of ``relay``."""

    kind: Literal["janus"] = Field("janus", title="SFU kind", description="Janus 1.x, HTTP API")
    url: str = Field(
        title="Janus HTTP API URL",
        description="e.g. http://10.0.0.5:8088/janus",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
    )
    more_urls: list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]] = Field(
        default_factory=list,
        title="Further Janus servers",
        description="Cameras are spread over all servers by a hash of their path; "
        "each camera is fed to one server (the next one if it is down)",
    )
    api_secret: SecretStr | None = Field(None, title="Janus api_secret (janus.jcfg)")
    admin_key: SecretStr | None = Field(
        None, title="Streaming plugin admin_key", description="Needed to create mountpoints"
    )
    rtp_host: str | None = Field(
        None,
        title="Where to send RTP",
        description="Janus's address as seen from this gateway (one server only); "
        "default: the URL's host",
    )
    srtp: bool = Field(
        True,
        title="Encrypt the feed to Janus (SRTP)",
        description="A fresh key per mountpoint, given to Janus over its API (use https)",
    )
    request_timeout_s: float = Field(
        5, gt=0, le=60, title="Janus request timeout (s)", description="Then: direct relay"
    )
    retry_s: float = Field(
        5, gt=0, le=600, title="Retry Janus after (s)", description="While down, viewers go direct"
    )
    linger_s: float = Field(
        10, ge=0, le=3600, title="Keep a camera's feed this long after its last viewer (s)"
    )


class WhipTarget(Model):
    """A camera published to a WHIP server (RFC 9725): MediaMTX, LiveKit Ingress, …"""

    camera: str = Field(title="Camera id or path")
    url: str = Field(
        title="WHIP endpoint URL",
        description="e.g. http://mediamtx:8889/cam-01/whip",
        pattern=r"^https?://[^\s/]+(/\S*)?$",
    )
    token: SecretStr | None = Field(None, title="Bearer token for the WHIP server")


class RelaySettings(Model):
    ice_servers: list[IceServer] = Field(default_factory=list, title="ICE servers")
    interfaces: list[str] = Field(
        default_factory=list,
        title="Host-candidate interfaces",
        description="Addresses offered as host candidates; empty: all",
    )
    session_timeout_s: float = Field(
        30, gt=0, le=3600, title="Tear down a viewer after this long without ICE consent"
    )
    low_width: int = Field(640, ge=64, le=3840, title="Low variant width")
    low_height: int = Field(360, ge=64, le=2160, title="Low variant height")
    low_bitrate_kbps: int = Field(500, ge=50, le=20000, title="Low variant bitrate (kbit/s)")
    transcode_bitrate_kbps: int = Field(
        3000, ge=100, le=50000, title="Bitrate of transcoded full-size H.264 (kbit/s)"
    )
    max_sessions: int = Field(
        256, ge=1, le=10000, title="Most WHEP viewers at once", description="Beyond: HTTP 503"
    )
    source_wait_s: float = Field(
        4,
        gt=0,
        le=60,
        title="Wait for video before answering (s)",
        description="How long a new viewer waits for the camera's first keyframe before "
        "getting HTTP 503 (camera offline)",
    )
    burst_mbps: float = Field(
        32,
        gt=0,
        le=10000,
        title="Start-up burst rate (Mbit/s)",
        description="Pace of the cached GOP sent to a new viewer",
    )
    workers: int = Field(
        0,
        ge=0,
        le=64,
        title="Relay worker processes",
        description="Processes that send the viewers' video, so that every core sends "
        "(e.g. the box's number of cores); 0: the gateway process sends",
    )
    shared_rtp: bool = Field(
        True,
        title="Packetise each frame once per camera",
        description="Passthrough viewers share one packetisation and skip aiortc's per-packet "
        "objects (with udp_gso: a third of the CPU per viewer); off: aiortc's own sender",
    )
    udp_gso: bool = Field(
        True,
        title="Send each frame's packets in few system calls (Linux UDP GSO)",
        description="With shared packetising: a run of equal-sized packets to one viewer "
        "leaves in one call; refused by the kernel: datagram by datagram, automatically",
    )
    resolve_mdns: bool = Field(
        False,
        title="Resolve viewers' mDNS (.local) candidates",
        description="Off: such candidates are dropped (resolving them multicasts); "
        "browsers still connect through peer-reflexive candidates",
    )
    sfu: SfuSettings | None = Field(
        None,
        title="Serve viewers through an SFU (Janus)",
        description="Each watched camera is fed to the SFU once; viewers keep the WHEP URL",
    )
    whip_out: list[WhipTarget] = Field(
        default_factory=list,
        title="Publish cameras over WHIP",
        description="Each listed camera is published once to its WHIP server and kept up",
    )
