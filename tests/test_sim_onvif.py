"""The simulated camera's ONVIF server, driven by a real onvif-zeep-async client and raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import itertools
import os
from pathlib import Path

import cv2
import httpx
import numpy as np
import onvif
import pytest
import zeep.exceptions
from lxml import etree
from onvif import ONVIFCamera

from gateway.sim import onvif_server
from gateway.sim.camera import SimCamera, SimProfile
from tests.support import free_port

ENV = "http://www.w3.org/2003/05/soap-envelope"
TER = "http://www.onvif.org/ver10/error"
_addresses = itertools.count(1)


def make_camera(**overrides) -> SimCamera:
    """A camera on its own 127.0.91.x address with a real (tiny) JPEG renderer."""
    address = f"127.0.91.{next(_addresses)}"
    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    cam = SimCamera(
        index=7,
        address=address,
        http_port=free_port(address),
        rtsp_port=8554,
        password="s3cret-pw",
        profiles=[
            SimProfile("profile_main", "MainStream", 1280, 720, 25, 50, "H264", 2048, "/main"),
            SimProfile("profile_sub", "SubStream", 640, 360, 15, 30, "H265", 512, "/sub"),
        ],
        snapshot_renderer=lambda _cam: jpeg,
    )
    for key, value in overrides.items():
        setattr(cam, key, value)
    return cam


@pytest.fixture
async def served():
    servers = []

    async def serve(**overrides):
        cam = make_camera(**overrides)
        servers.append(await onvif_server.start(cam))
        return cam

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


def soap(body: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?><s:Envelope xmlns:s="{ENV}"><s:Header>{header}</s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def username_token(user: str, password: str, created: str | None = None) -> str:
    nonce = os.urandom(16)
    created = created or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest())
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    return (
        f'<Security xmlns="{wsse}"><UsernameToken><Username>{user}</Username>'
        '<Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-'
        f'token-profile-1.0#PasswordDigest">{digest.decode()}</Password>'
        f"<Nonce>{base64.b64encode(nonce).decode()}</Nonce>"
        f'<Created xmlns="{wsu}">{created}</Created></UsernameToken></Security>'
    )


def fault_codes(content: bytes) -> tuple[str, list[str]]:
    """(code value, subcode values) of a SOAP 1.2 fault."""
    root = etree.fromstring(content)
    code = root.find(f".//{{{ENV}}}Code")
    values = [v.text for v in code.iter(f"{{{ENV}}}Value")]
    return values[0], values[1:]


GET_DEVICE_INFO = '<GetDeviceInformation xmlns="http://www.onvif.org/ver10/device/wsdl"/>'


async def test_zeep_client_reads_device_profiles_and_stream_uris(served):
    cam = await served()
    client = ONVIFCamera(cam.address, cam.http_port, cam.username, cam.password, adjust_time=True)
    try:
        await client.update_xaddrs()
        assert client.xaddrs["http://www.onvif.org/ver10/media/wsdl"].endswith("/media_service")
        device = await client.create_devicemgmt_service()
        info = await device.GetDeviceInformation()
        assert (info.Manufacturer, info.SerialNumber) == (cam.manufacturer, cam.serial)
        scopes = [s.ScopeItem for s in await device.GetScopes()]
        assert "onvif://www.onvif.org/Profile/Streaming" in scopes
        assert any(s.startswith("onvif://www.onvif.org/name/") for s in scopes)
        caps = await device.GetCapabilities({"Category": "All"})
        assert caps.PTZ.XAddr.endswith("/onvif/ptz_service")
        services = await device.GetServices({"IncludeCapability": True})
        assert len(services) == 4 and all(s.Capabilities is not None for s in services)
        assert (await device.GetHostname()).Name == cam.id
        assert (await device.GetNetworkInterfaces())[0].IPv4.Config.Manual[0].Address == (
            cam.address
        )

        media = await client.create_media_service()
        profiles = await media.GetProfiles()
        assert [p.token for p in profiles] == ["profile_main", "profile_sub"]
        main = profiles[0].VideoEncoderConfiguration
        assert (main.Encoding, main.Resolution.Width, main.Resolution.Height) == ("H264", 1280, 720)
        assert (main.RateControl.FrameRateLimit, main.RateControl.BitrateLimit) == (25, 2048)
        assert main.H264.GovLength == 50
        # Media1 cannot say H265; the sim, like real cameras, says H264 without H264 details.
        sub = profiles[1].VideoEncoderConfiguration
        assert (sub.Encoding, sub.H264, sub.Resolution.Width) == ("H264", None, 640)
        assert profiles[0].PTZConfiguration.NodeToken
        for profile in profiles:
            uri = await media.GetStreamUri(
                {
                    "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                    "ProfileToken": profile.token,
                }
            )
            assert uri.Uri == cam.rtsp_url(profile.token)
            assert "@" not in uri.Uri and cam.password not in uri.Uri
        snap = await media.GetSnapshotUri({"ProfileToken": "profile_main"})
        assert snap.Uri == f"http://{cam.address}:{cam.http_port}/snapshot.jpg"
        assert (await media.GetVideoSources())[0].Resolution.Width == 1280
        assert len(await media.GetVideoEncoderConfigurations()) == 2
        with pytest.raises(zeep.exceptions.Fault):
            await media.GetProfile({"ProfileToken": "nope"})
    finally:
        await client.close()


async def test_zeep_client_moves_ptz_and_manages_presets(served):
    cam = await served()
    client = ONVIFCamera(cam.address, cam.http_port, cam.username, cam.password)
    try:
        await client.update_xaddrs()
        ptz = await client.create_ptz_service()
        assert (await ptz.GetNodes())[0].MaximumNumberOfPresets > 0
        assert (await ptz.GetConfigurations())[0].token
        token = "profile_main"
        await ptz.ContinuousMove(
            {"ProfileToken": token, "Velocity": {"PanTilt": {"x": 1.0, "y": -0.5}}}
        )
        await asyncio.sleep(0.5)
        moving = await ptz.GetStatus({"ProfileToken": token})
        assert moving.MoveStatus.PanTilt == "MOVING"
        assert moving.Position.PanTilt.x > 0.05 and moving.Position.PanTilt.y < -0.02
        await ptz.Stop({"ProfileToken": token})
        stopped = await ptz.GetStatus({"ProfileToken": token})
        assert stopped.MoveStatus.PanTilt == "IDLE" and cam.ptz["moving"] is False
        pan = stopped.Position.PanTilt.x
        await asyncio.sleep(0.3)
        assert cam.ptz["pan"] == pytest.approx(pan, abs=1e-3)

        preset = await ptz.SetPreset({"ProfileToken": token, "PresetName": "Gate"})
        await ptz.GotoPreset({"ProfileToken": token, "PresetToken": "preset_1"})
        assert cam.ptz["pan"] == 0.0
        presets = {p.token: p for p in await ptz.GetPresets({"ProfileToken": token})}
        assert presets[preset].Name == "Gate"
        assert presets[preset].PTZPosition.PanTilt.x == pytest.approx(pan, abs=1e-3)
        await ptz.GotoPreset({"ProfileToken": token, "PresetToken": preset})
        assert cam.ptz["pan"] == pytest.approx(pan, abs=1e-3)
        await ptz.RemovePreset({"ProfileToken": token, "PresetToken": preset})
        assert preset not in cam.ptz["presets"]
        with pytest.raises(zeep.exceptions.Fault):
            await ptz.GotoPreset({"ProfileToken": token, "PresetToken": preset})
        # A timed move stops by itself.
        await ptz.ContinuousMove(
            {"ProfileToken": token, "Velocity": {"Zoom": {"x": 1.0}}, "Timeout": "PT0.3S"}
        )
        await asyncio.sleep(1.0)
        assert cam.ptz["moving"] is False and 0.03 < cam.ptz["zoom"] < 0.2
    finally:
        await client.close()


async def test_wrong_password_gets_not_authorized_fault(served):
    cam = await served()
    client = ONVIFCamera(cam.address, cam.http_port, cam.username, "wrong")
    try:
        await client.update_xaddrs()  # GetServices is PRE_AUTH, as on real cameras
        device = await client.create_devicemgmt_service()
        with pytest.raises(zeep.exceptions.Fault) as err:
            await device.GetDeviceInformation()
        assert any("NotAuthorized" in str(code) for code in err.value.subcodes)
    finally:
        await client.close()
    url = cam.onvif_url()
    async with httpx.AsyncClient() as http:
        bad = await http.post(url, content=soap(GET_DEVICE_INFO, username_token("admin", "x")))
        assert bad.status_code == 400
        assert fault_codes(bad.content) == ("env:Sender", ["ter:NotAuthorized"])
        good = await http.post(
            url, content=soap(GET_DEVICE_INFO, username_token("admin", cam.password))
        )
        assert good.status_code == 200 and b"SIM000007" in good.content


async def test_clients_must_compensate_the_camera_clock(served):
    cam = await served(clock_offset_s=3600.0)
    naive = ONVIFCamera(cam.address, cam.http_port, cam.username, cam.password)
    adjusted = ONVIFCamera(cam.address, cam.http_port, cam.username, cam.password, adjust_time=True)
    try:
        await naive.update_xaddrs()
        with pytest.raises(zeep.exceptions.Fault):
            await (await naive.create_devicemgmt_service()).GetDeviceInformation()
        await adjusted.update_xaddrs()
        assert 3590 < adjusted.dt_diff.total_seconds() < 3610
        info = await (await adjusted.create_devicemgmt_service()).GetDeviceInformation()
        assert info.Model == cam.model
    finally:
        await naive.close()
        await adjusted.close()


async def test_missing_credentials_get_digest_challenge_and_http_digest_works(served):
    cam = await served()
    async with httpx.AsyncClient() as http:
        r = await http.post(cam.onvif_url(), content=soap(GET_DEVICE_INFO))
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Digest ")
        assert fault_codes(r.content)[1] == ["ter:NotAuthorized"]
        auth = httpx.DigestAuth(cam.username, cam.password)
        r = await http.post(cam.onvif_url(), content=soap(GET_DEVICE_INFO), auth=auth)
        assert r.status_code == 200 and b"GetDeviceInformationResponse" in r.content
        bad = httpx.DigestAuth(cam.username, "nope")
        r = await http.post(cam.onvif_url(), content=soap(GET_DEVICE_INFO), auth=bad)
        assert r.status_code == 401


XXE = (
    '<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<s:Envelope xmlns:s="{ENV}"><s:Body><GetHostname xmlns="http://www.onvif.org/ver10/'
    'device/wsdl">&xxe;</GetHostname></s:Body></s:Envelope>'
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)
    )
    + f']><s:Envelope xmlns:s="{ENV}"><s:Body><GetHostname xmlns="http://www.onvif.org/ver10/'
    'device/wsdl">&lol9;</GetHostname></s:Body></s:Envelope>'
)


@pytest.mark.parametrize("payload", [XXE, LAUGHS, XXE.encode("utf-16").decode("latin-1")])
async def test_dtd_payloads_are_refused_and_server_stays_up(served, payload):
    cam = await served()
    async with httpx.AsyncClient() as http:
        r = await http.post(cam.onvif_url(), content=payload.encode("latin-1", "replace"))
        assert r.status_code == 400
        assert b"root:" not in r.content and b"lollol" not in r.content
        assert fault_codes(r.content)[0] == "env:Sender"
        sdt = '<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>'
        r = await http.post(cam.onvif_url(), content=soap(sdt))
        assert r.status_code == 200 and b"UTCDateTime" in r.content


async def test_unknown_action_and_bad_http_get_clean_errors(served):
    cam = await served()
    async with httpx.AsyncClient() as http:
        r = await http.post(
            cam.onvif_url(),
            content=soap('<Reboot xmlns="http://www.onvif.org/ver10/device/wsdl"/>'),
        )
        assert r.status_code == 500
        assert fault_codes(r.content) == ("env:Receiver", ["ter:ActionNotSupported"])
        r = await http.post(cam.onvif_url(), content=b"<not-xml")
        assert r.status_code == 400
        r = await http.post(cam.onvif_url(), content=b"x" * (256 * 1024 + 1))
        assert r.status_code == 413
        assert (await http.get(cam.onvif_url())).status_code == 405
    reader, writer = await asyncio.open_connection(cam.address, cam.http_port)
    writer.write(b"BROKEN\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 400")
    writer.close()
    # Keep-alive: two requests on one connection.
    reader, writer = await asyncio.open_connection(cam.address, cam.http_port)
    req = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(req + req)
    first = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
    second = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 404") and second.startswith(b"HTTP/1.1 404")
    writer.close()
    # Expect: 100-continue, as .NET clients (ONVIF Device Manager) send it.
    body = soap('<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>')
    reader, writer = await asyncio.open_connection(cam.address, cam.http_port)
    writer.write(
        b"POST /onvif/device_service HTTP/1.1\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
        b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(body)
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_snapshot_needs_basic_or_digest_auth(served):
    cam = await served()
    open_cam = await served(snapshot_auth=False)
    url = f"http://{cam.address}:{cam.http_port}/snapshot.jpg"
    async with httpx.AsyncClient() as http:
        r = await http.get(url)
        assert r.status_code == 401
        assert r.headers.get_list("www-authenticate")[0].startswith("Digest ")
        for auth in (
            httpx.BasicAuth(cam.username, cam.password),
            httpx.DigestAuth(cam.username, cam.password),
        ):
            r = await http.get(url, auth=auth)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            assert r.content[:2] == b"\xff\xd8"
        r = await http.get(url, auth=httpx.BasicAuth(cam.username, "wrong"))
        assert r.status_code == 401
        r = await http.get(f"http://{open_cam.address}:{open_cam.http_port}/snapshot.jpg")
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"


async def test_offline_camera_refuses_connections_until_online(served):
    cam = await served()
    sdt = soap('<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>')
    async with httpx.AsyncClient() as http:
        assert (await http.post(cam.onvif_url(), content=sdt)).status_code == 200
        cam.set_fault("offline")  # the runner's control API path
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            await http.post(cam.onvif_url(), content=sdt)
        await onvif_server.set_online(cam, True)
        assert (await http.post(cam.onvif_url(), content=sdt)).status_code == 200
        cam.online = False  # a bare flag change is picked up by polling
        await asyncio.sleep(1.0)
        with pytest.raises(httpx.ConnectError):
            await http.post(cam.onvif_url(), content=sdt)
        cam.online = True
        await asyncio.sleep(1.0)
        assert (await http.post(cam.onvif_url(), content=sdt)).status_code == 200
        dark = await served(online=False)  # a camera that starts offline
        with pytest.raises(httpx.ConnectError):
            await http.post(dark.onvif_url(), content=sdt)
        await onvif_server.set_online(dark, True)
        assert (await http.post(dark.onvif_url(), content=sdt)).status_code == 200


TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TT = "http://www.onvif.org/ver10/schema"
P = "<ProfileToken>profile_main</ProfileToken>"
# (namespace, operation, request children) for every operation the sim serves.
ALL_OPERATIONS = [
    (TDS, "GetSystemDateAndTime", ""),
    (TDS, "GetDeviceInformation", ""),
    (TDS, "GetCapabilities", "<Category>All</Category>"),
    (TDS, "GetServices", "<IncludeCapability>true</IncludeCapability>"),
    (TDS, "GetServiceCapabilities", ""),
    (TDS, "GetScopes", ""),
    (TDS, "GetNetworkInterfaces", ""),
    (TDS, "GetHostname", ""),
    (TDS, "GetEndpointReference", ""),
    (TRT, "GetProfiles", ""),
    (TRT, "GetProfile", P),
    (
        TRT,
        "GetStreamUri",
        f'<StreamSetup><Stream xmlns="{TT}">RTP-Unicast</Stream><Transport xmlns="{TT}">'
        f"<Protocol>RTSP</Protocol></Transport></StreamSetup>{P}",
    ),
    (TRT, "GetSnapshotUri", P),
    (TRT, "GetVideoSources", ""),
    (TRT, "GetVideoSourceConfigurations", ""),
    (TRT, "GetVideoEncoderConfigurations", ""),
    (TRT, "GetServiceCapabilities", ""),
    (TPTZ, "GetNodes", ""),
    (TPTZ, "GetConfigurations", ""),
    (TPTZ, "GetServiceCapabilities", ""),
    (TPTZ, "SetPreset", P + "<PresetName>Gate</PresetName>"),
    (TPTZ, "ContinuousMove", P + f'<Velocity><PanTilt xmlns="{TT}" x="0.5" y="0"/></Velocity>'),
    (TPTZ, "GetStatus", P),
    (TPTZ, "Stop", P),
    (TPTZ, "GetPresets", P),
    (TPTZ, "GotoPreset", P + "<PresetToken>preset_1</PresetToken>"),
    (TPTZ, "AbsoluteMove", P + f'<Position><Zoom xmlns="{TT}" x="0.5"/></Position>'),
    (TPTZ, "RemovePreset", P + "<PresetToken>preset_1</PresetToken>"),
]


def onvif_schema(tmp: Path) -> etree.XMLSchema:
    """The device, media and PTZ message schemas from onvif-zeep-async's bundled WSDLs."""
    wsdl_dir = Path(onvif.__file__).parent / "wsdl"
    xs = "http://www.w3.org/2001/XMLSchema"
    imports = []
    for name in ("devicemgmt", "media", "ptz"):
        schema = etree.parse(str(wsdl_dir / f"{name}.wsdl")).find(f".//{{{xs}}}schema")
        for imp in schema.iter(f"{{{xs}}}import"):
            location = imp.get("schemaLocation", "")
            if location.startswith("./"):
                imp.set("schemaLocation", (wsdl_dir / location[2:]).as_uri())
        (tmp / f"{name}.xsd").write_bytes(etree.tostring(schema))
        ns = schema.get("targetNamespace")
        imports.append(
            f'<xs:import namespace="{ns}" schemaLocation="{(tmp / name).as_uri()}.xsd"/>'
        )
    (tmp / "all.xsd").write_text(f'<xs:schema xmlns:xs="{xs}">{"".join(imports)}</xs:schema>')
    return etree.XMLSchema(etree.parse(str(tmp / "all.xsd")))


async def test_every_response_validates_against_the_onvif_schemas(served, tmp_path):
    schema = onvif_schema(tmp_path)
    cam = await served()
    async with httpx.AsyncClient() as http:
        for ns, op, inner in ALL_OPERATIONS:
            body = soap(f'<{op} xmlns="{ns}">{inner}</{op}>', username_token("admin", cam.password))
            r = await http.post(cam.onvif_url(), content=body)
            assert r.status_code == 200, (op, r.text)
            response = etree.fromstring(r.content).find(f"{{{ENV}}}Body")[0]
            assert etree.QName(response).localname == op + "Response"
            assert schema.validate(etree.ElementTree(response)), (op, str(schema.error_log))
    # The check has teeth: a VideoSource without its required Framerate is caught.
    bad = etree.fromstring(
        f'<trt:GetVideoSourcesResponse xmlns:trt="{TRT}" xmlns:tt="{TT}">'
        '<trt:VideoSources token="v"><tt:Resolution><tt:Width>1</tt:Width><tt:Height>1'
        "</tt:Height></tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>"
    )
    assert not schema.validate(etree.ElementTree(bad))


async def test_random_garbage_never_takes_the_server_down(served):
    cam = await served()
    rng = np.random.default_rng(7)
    heads = [
        b"POST /onvif/device_service HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n",
        b"POST /onvif/device_service HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /onvif/device_service HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        b"POST /onvif/device_service HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
    ]
    junk = [rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()]
    junk += [
        b"POST /onvif/device_service HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(j) + j
        for j in (rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), soap("<a>" * 5000))
    ]
    statuses = []
    for data in heads + junk:
        reader, writer = await asyncio.open_connection(cam.address, cam.http_port)
        writer.write(data)
        writer.write_eof()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status == b"" or status.split()[1][:1] in (b"4", b"5"), (data[:60], status)
        statuses.append(status.split()[1] if status else b"closed")
        writer.close()
    # Oversize, negative, chunked, too many headers, long line, truncated, junk, deep XML.
    assert statuses == [b"413", b"400", b"411", b"431", b"431", b"closed", b"400", b"400", b"400"]
    sdt = soap('<GetSystemDateAndTime xmlns="http://www.onvif.org/ver10/device/wsdl"/>')
    async with httpx.AsyncClient() as http:
        assert (await http.post(cam.onvif_url(), content=sdt)).status_code == 200
