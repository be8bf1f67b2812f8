"""ONVIF Media2 (ver20/media): profiles with their encoder configurations, stream and snapshot URIs.

onvif-zeep-async has no Media2, and many cameras sold since 2020 list their H.265
profiles only there (Media1's encoding enumeration has no H.265), so this reads it
over :class:`gateway.cameras.soap.SoapClient`. The codec comes as the camera
names it ("H264", "H265", "JPEG"); sizes, frame rate, bitrate and GOP as in Media1.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from gateway.cameras.errors import OnvifError
from gateway.cameras.soap import SoapClient, SoapFault, find, find_all, text

TR2 = "http://www.onvif.org/ver20/media/wsdl"
_ACTION = TR2  # soapAction of ver20/media operations: the namespace, then the name
_ENCODINGS = {"H264": "H264", "H265": "H265", "HEVC": "H265", "JPEG": "JPEG", "MJPEG": "JPEG"}
MAX_PROFILES = 64


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < 1e9 else None


def parse_profiles(reply: Element) -> list[dict[str, Any]]:
    """Video profiles of a GetProfiles reply as ``Profile`` fields (no stream URI yet)."""
    out: list[dict[str, Any]] = []
    for p in find_all(reply, "Profiles")[:MAX_PROFILES]:
        token = (p.get("token") or "").strip()
        encoder = find(p, "Configurations", "VideoEncoder")
        if not token or encoder is None:
            continue  # audio or metadata only: not a video stream
        encoding = text(encoder, "Encoding").upper()
        fps = _number(text(encoder, "RateControl", "FrameRateLimit"))
        bitrate = _number(text(encoder, "RateControl", "BitrateLimit"))
        gop = _number(encoder.get("GovLength") or "")
        out.append(
            {
                "token": token[:64],
                "name": text(p, "Name")[:128],
                "encoding": _ENCODINGS.get(encoding, encoding[:16]),
                "width": int(_number(text(encoder, "Resolution", "Width")) or 0),
                "height": int(_number(text(encoder, "Resolution", "Height")) or 0),
                "fps": fps,
                "gop": int(gop) if gop else None,
                "bitrate_kbps": int(bitrate) if bitrate else None,
                "ptz": find(p, "Configurations", "PTZ") is not None,
            }
        )
    return out


class Media2:
    """The Media2 service of one camera at ``url``."""

    def __init__(self, soap: SoapClient, url: str) -> None:
        self.soap = soap
        self.url = url

    async def profiles(self) -> list[dict[str, Any]]:
        # Without Type the reply names the profiles but leaves out their configurations.
        body = f'<tr2:GetProfiles xmlns:tr2="{TR2}"><tr2:Type>All</tr2:Type></tr2:GetProfiles>'
        reply = await self.soap.call(self.url, f"{_ACTION}/GetProfiles", body)
        return parse_profiles(reply)

    async def stream_uri(self, token: str) -> str:
        last: OnvifError | None = None
        # "RtspUnicast" is the 2.x name; some firmwares only know the older "RTSP".
        for protocol in ("RtspUnicast", "RTSP"):
            body = (
                f'<tr2:GetStreamUri xmlns:tr2="{TR2}"><tr2:Protocol>{protocol}</tr2:Protocol>'
                f"<tr2:ProfileToken>{escape(token)}</tr2:ProfileToken></tr2:GetStreamUri>"
            )
            try:
                reply = await self.soap.call(self.url, f"{_ACTION}/GetStreamUri", body)
            except SoapFault as fault:
                last = fault
                continue
            return text(reply, "Uri")
        raise last or OnvifError(f"{self.soap.label}: GetStreamUri failed")

    async def snapshot_uri(self, token: str) -> str:
        body = (
            f'<tr2:GetSnapshotUri xmlns:tr2="{TR2}">'
            f"<tr2:ProfileToken>{escape(token)}</tr2:ProfileToken></tr2:GetSnapshotUri>"
        )
        reply = await self.soap.call(self.url, f"{_ACTION}/GetSnapshotUri", body)
        return text(reply, "Uri")
