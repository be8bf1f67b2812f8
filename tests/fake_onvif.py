"""A small ONVIF device for client tests, with switchable vendor quirks and faults.

Not the simulator: it answers from templates written after the ONVIF Profile S
spec and real devices' replies, so the client is proven against more than one
implementation. Quirks: no GetServices (GetCapabilities only), XAddrs and stream
URIs naming 0.0.0.0, a skewed clock that rejects unadjusted WS-Security
timestamps, HTTP 401 instead of a SOAP fault, hostile or stalled replies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import random
import re
from dataclasses import dataclass, field

from aiohttp import web
from lxml import etree

TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TT = "http://www.onvif.org/ver10/schema"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"'
    f' xmlns:tds="{TDS}" xmlns:trt="{TRT}" xmlns:tptz="{TPTZ}" xmlns:tt="{TT}"'
    ' xmlns:ter="http://www.onvif.org/ver10/error">'
    "<env:Body>{body}</env:Body></env:Envelope>"
)

AUTH_FAULT = (
    "<env:Fault><env:Code><env:Value>env:Sender</env:Value><env:Subcode>"
    "<env:Value>ter:NotAuthorized</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="en">Sender not Authorized</env:Text></env:Reason>'
    "</env:Fault>"
)
NOT_SUPPORTED = (
    "<env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode>"
    "<env:Value>ter:ActionNotSupported</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="en">Optional Action Not Implemented</env:Text>'
    "</env:Reason></env:Fault>"
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>&lol3;'
    "</env:Body></env:Envelope>"
)


@dataclass
class FakeOnvif:
    """Settings of one fake device; ``start()`` serves it on ``host``."""

    host: str = "127.0.0.1"
    username: str = "admin"
    password: str = "secret pw/1"
    manufacturer: str = "Acme"
    model: str = "IPC-1"
    get_services: bool = True
    report_host: str | None = None  # the host in XAddrs/URIs (None: the real one)
    clock_skew_s: float = 0.0
    auth_http_401: bool = False
    http_digest: bool = False  # require HTTP digest on every SOAP request (no WS-Security)
    hostile: str | None = None  # "billion", "oversize", "truncated", "stall"
    ptz: bool = True
    calls: list[str] = field(default_factory=list)
    ptz_log: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> web.AppRunner:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_post("/onvif/{service}", self._handle)
        app.router.add_get("/snap.jpg", self._snapshot)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner

    @property
    def advertised(self) -> str:
        return f"{self.report_host or self.host}:{self.port}"

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_skew_s)

    def _authorised(self, root: etree._Element) -> bool:
        token = root.find(f".//{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        user = token.findtext(f"{{{WSSE}}}Username")
        digest = token.findtext(f"{{{WSSE}}}Password") or ""
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = token.findtext(f"{{{WSU}}}Created") or ""
        expected = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + self.password.encode()).digest()
        ).decode()
        if user != self.username or digest != expected:
            return False
        try:
            when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            return False
        # Real devices reject tokens created too far from their own clock.
        return abs((when - self._now()).total_seconds()) < 30

    def _digest_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Digest "):
            return False
        p = dict(re.findall(r'(\w+)="?([^",]*)"?', header[7:]))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.username}:{p.get('realm')}:{self.password}")
        ha2 = md5(f"{request.method}:{p.get('uri')}")
        expected = md5(
            f"{ha1}:{p.get('nonce')}:{p.get('nc')}:{p.get('cnonce')}:{p.get('qop')}:{ha2}"
        )
        return p.get("username") == self.username and p.get("response") == expected

    def _reply(self, body: str, status: int = 200) -> web.Response:
        return web.Response(
            text=ENVELOPE.format(body=body),
            status=status,
            content_type="application/soap+xml",
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        root = etree.fromstring(raw)
        body = root.find("{http://www.w3.org/2003/05/soap-envelope}Body")
        op = etree.QName(body[0]).localname
        self.calls.append(op)
        if self.http_digest and not self._digest_ok(request):
            nonce = base64.b64encode(random.randbytes(12)).decode()
            challenge = f'Digest realm="onvif", qop="auth", nonce="{nonce}", algorithm=MD5'
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        if self.hostile == "stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), 60)
        if self.hostile == "billion":
            return web.Response(text=BILLION_LAUGHS, content_type="application/soap+xml")
        if self.hostile == "oversize":
            return web.Response(body=b"<a>" + b"x" * (2 << 20) + b"</a>")
        if self.hostile == "truncated" and op != "GetSystemDateAndTime":
            text = ENVELOPE.format(body=_device_info(self))
            return web.Response(text=text[: len(text) // 2], content_type="application/soap+xml")
        if op == "GetSystemDateAndTime":
            return self._reply(_date_time(self._now()))
        if not self.http_digest and not self._authorised(root):
            if self.auth_http_401:
                return web.Response(status=401, text="<html>Unauthorized</html>")
            return self._reply(AUTH_FAULT, 400)
        handler = {
            "GetServices": lambda: _services(self) if self.get_services else None,
            "GetCapabilities": lambda: _capabilities(self),
            "GetDeviceInformation": lambda: _device_info(self),
            "GetProfiles": lambda: _profiles(self),
            "GetStreamUri": lambda: _uri(
                "trt:GetStreamUriResponse", f"rtsp://{self.advertised}/{_token(raw)}"
            ),
            "GetSnapshotUri": lambda: _uri(
                "trt:GetSnapshotUriResponse", f"http://{self.advertised}/snap.jpg"
            ),
            "ContinuousMove": lambda: self._ptz("ContinuousMove", root),
            "Stop": lambda: self._ptz("Stop", root),
            "GotoPreset": lambda: self._ptz("GotoPreset", root),
            "GetPresets": lambda: (
                "<tptz:GetPresetsResponse><tptz:Preset token='1'><tt:Name>Gate</tt:Name>"
                "</tptz:Preset><tptz:Preset token='2'><tt:Name>路口</tt:Name></tptz:Preset>"
                "</tptz:GetPresetsResponse>"
            ),
        }.get(op)
        text = handler() if handler else None
        if text is None:
            return self._reply(NOT_SUPPORTED, 400)
        return self._reply(text)

    def _ptz(self, op: str, root: etree._Element) -> str:
        fields = {
            etree.QName(el).localname: (el.text or "").strip() or dict(el.attrib).__repr__()
            for el in root.iter()
            if etree.QName(el).namespace in (TPTZ, TT)
        }
        self.ptz_log.append((op, fields))
        return f"<tptz:{op}Response/>"

    async def _snapshot(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="cam"'})
        return web.Response(body=b"\xff\xd8\xff\xe0fakejpeg\xff\xd9", content_type="image/jpeg")


def _token(raw: bytes) -> str:
    m = re.search(rb"ProfileToken>([^<]+)<", raw)
    return m.group(1).decode() if m else "?"


def _date_time(now: dt.datetime) -> str:
    return (
        "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
        "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
        f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}"
        f"</tt:Minute><tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}"
        f"</tt:Year><tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date>"
        "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
    )


def _services(dev: FakeOnvif) -> str:
    items = [(TDS, "device_service"), (TRT, "media_service")]
    if dev.ptz:
        items.append((TPTZ, "ptz_service"))
    out = "".join(
        f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
        f"<tds:XAddr>http://{dev.advertised}/onvif/{path}</tds:XAddr>"
        "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
        for ns, path in items
    )
    return f"<tds:GetServicesResponse>{out}</tds:GetServicesResponse>"


def _capabilities(dev: FakeOnvif) -> str:
    ptz = f"<tt:PTZ><tt:XAddr>http://{dev.advertised}/onvif/ptz_service</tt:XAddr></tt:PTZ>"
    return (
        "<tds:GetCapabilitiesResponse><tds:Capabilities>"
        f"<tt:Device><tt:XAddr>http://{dev.advertised}/onvif/device_service</tt:XAddr></tt:Device>"
        f"<tt:Media><tt:XAddr>http://{dev.advertised}/onvif/media_service</tt:XAddr>"
        "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
        "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
        f"</tt:StreamingCapabilities></tt:Media>{ptz if dev.ptz else ''}"
        "</tds:Capabilities></tds:GetCapabilitiesResponse>"
    )


def _device_info(dev: FakeOnvif) -> str:
    return (
        "<tds:GetDeviceInformationResponse>"
        f"<tds:Manufacturer>{dev.manufacturer}</tds:Manufacturer><tds:Model>{dev.model}</tds:Model>"
        "<tds:FirmwareVersion>V5.7.3</tds:FirmwareVersion><tds:SerialNumber>SN123</tds:SerialNumber>"
        "<tds:HardwareId>88</tds:HardwareId></tds:GetDeviceInformationResponse>"
    )


def _profile(token: str, name: str, w: int, h: int, fps: int, gov: int, ptz: bool) -> str:
    ptz_xml = (
        "<tt:PTZConfiguration token='ptz0'><tt:Name>PTZ</tt:Name><tt:UseCount>2</tt:UseCount>"
        "<tt:NodeToken>node0</tt:NodeToken></tt:PTZConfiguration>"
        if ptz
        else ""
    )
    return (
        f"<trt:Profiles token='{token}' fixed='true'><tt:Name>{name}</tt:Name>"
        "<tt:VideoSourceConfiguration token='vsc'><tt:Name>vsc</tt:Name>"
        "<tt:UseCount>2</tt:UseCount>"
        "<tt:SourceToken>vs0</tt:SourceToken><tt:Bounds x='0' y='0' width='1920' height='1080'/>"
        "</tt:VideoSourceConfiguration>"
        f"<tt:VideoEncoderConfiguration token='vec_{token}'><tt:Name>{name}</tt:Name>"
        "<tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>"
        f"<tt:Resolution><tt:Width>{w}</tt:Width><tt:Height>{h}</tt:Height></tt:Resolution>"
        "<tt:Quality>4</tt:Quality><tt:RateControl>"
        f"<tt:FrameRateLimit>{fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
        "<tt:BitrateLimit>2048</tt:BitrateLimit></tt:RateControl>"
        f"<tt:H264><tt:GovLength>{gov}</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>"
        "<tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>"
        f"{ptz_xml}</trt:Profiles>"
    )


def _profiles(dev: FakeOnvif) -> str:
    # Sub stream listed first on purpose: the client must pick by resolution.
    return (
        "<trt:GetProfilesResponse>"
        + _profile("Profile_2", "SubStream", 640, 360, 15, 30, dev.ptz)
        + _profile("Profile_1", "MainStream", 1920, 1080, 25, 50, dev.ptz)
        + "<trt:Profiles token='audio_only' fixed='false'><tt:Name>Audio</tt:Name></trt:Profiles>"
        + "</trt:GetProfilesResponse>"
    )


def _uri(tag: str, uri: str) -> str:
    return (
        f"<{tag}><trt:MediaUri><tt:Uri>{uri}</tt:Uri>"
        "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
        "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
        f"</trt:MediaUri></{tag}>"
    )
