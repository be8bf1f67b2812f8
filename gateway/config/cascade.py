"""Settings for the up-links: our own cascade and GB/T 28181 platforms."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from gateway.config.base import Id, Model


class ParentSettings(Model):
    url: str = Field(title="Parent URL", description="e.g. https://town.example:8443")
    token: SecretStr = Field(title="Token issued by the parent (gateway children add)")
    tls_fingerprint: str | None = Field(
        None, title="Pinned SHA-256 fingerprint of the parent's certificate"
    )


class CascadeSettings(Model):
    level: Literal["city", "county", "town", "village", "site"] = Field(
        "site", title="Level in the tree"
    )
    id: Id = Field("gateway", title="This gateway's id", description="One path element")
    name: str = Field("", title="Display name, e.g. 城关镇")
    parent: ParentSettings | None = Field(None, title="Parent platform (上级平台)")
    heartbeat_s: float = Field(2, gt=0, le=300, title="Heartbeat period (s)")
    offline_after_s: float = Field(6, gt=0, le=3600, title="Child offline after this silence")


GB_ID = r"^\d{20}$"


class GbUpstream(Model):
    """One GB/T 28181 upper platform (上级平台) this gateway registers to."""

    id: Id = Field(title="Local name of this upstream, e.g. county")
    enabled: bool = Field(True, title="Register to this platform")
    server_id: str = Field(pattern=GB_ID, title="上级平台编号 (server ID, 20 digits)")
    domain: str = Field(pattern=r"^\d{10}$", title="SIP 域 (SIP domain, 10 digits)")
    host: str = Field(min_length=1, max_length=253, title="Platform SIP address")
    port: int = Field(5060, ge=1, le=65535, title="Platform SIP port")
    transport: Literal["udp", "tcp"] = Field("udp", title="传输协议 (SIP transport)")
    device_id: str = Field(
        pattern=GB_ID,
        title="设备编号 (our ID for this platform, 20 digits)",
        description="Type digits 11-13: 200 platform (default) or 118 NVR",
    )
    password: SecretStr = Field(SecretStr(""), title="密码 (registration password)")
    local_port: int = Field(0, ge=0, le=65535, title="Our SIP port (0: any free port)")
    local_host: str = Field("0.0.0.0", title="Our SIP bind address")
    expires_s: int = Field(3600, ge=60, le=86400, title="Registration expiry (s)")
    keepalive_s: float = Field(60, ge=1, le=3600, title="Keepalive interval (s)")
    keepalive_misses: int = Field(3, ge=1, le=100, title="Missed keepalives before re-register")
    charset: Literal["gb2312", "gb18030", "utf-8"] = Field("gb2312", title="MANSCDP body charset")
    civil_code: str = Field(
        "", pattern=r"^(\d{2}|\d{4}|\d{6}|\d{8})?$", title="本级行政区划 (civil code)"
    )
    catalog_page: int = Field(1, ge=1, le=50, title="Catalog items per MESSAGE")
    share: list[Annotated[str, Field(min_length=1, max_length=640)]] = Field(
        default_factory=lambda: ["*"],
        max_length=1000,
        title="Shared cameras",
        description="Camera paths, or subtrees as village-1/*; * shares the whole tree",
    )

    @field_validator("device_id")
    @classmethod
    def _device_type(cls, value: str) -> str:
        if value[10:13] not in ("200", "118"):
            raise ValueError("type digits 11-13 must be 200 (platform) or 118 (NVR)")
        return value


class Gb28181Settings(Model):
    """GB/T 28181: this gateway as a lower platform of county/city platforms (国标级联)."""

    upstream: list[GbUpstream] = Field(default_factory=list, title="Upper platforms")
    sip_t1_s: float = Field(0.5, gt=0, le=10, title="SIP timer T1 (s)")

    @field_validator("upstream")
    @classmethod
    def _unique_upstream(cls, ups: list[GbUpstream]) -> list[GbUpstream]:
        seen: set[str] = set()
        for up in ups:
            if up.id in seen:
                raise ValueError(f"upstream id {up.id!r} appears twice")
            seen.add(up.id)
        return ups
