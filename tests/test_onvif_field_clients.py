"""ONVIF clients as cameras in the field need them: SOAP 1.1-only firmwares, a camera clock
hours off, and HTTP digest where WS-Security is refused.

The simulated camera's real ONVIF server on loopback (in this process), with the options
that reproduce each camera, and our client (onvif-zeep-async plus our SOAP client) as a
user's ``gateway probe`` runs it; one case through ``gateway sim`` and ``gateway probe``.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest

from gateway.cameras import onvif
from gateway.cameras.cli import probe_main
from gateway.cameras.soap import SoapClient
from gateway.sim import onvif_server
from tests.support import small_sim_args
from tests.test_sim_onvif import make_camera

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TR2 = "http://www.onvif.org/ver20/media/wsdl"


@pytest.fixture
async def served():
    servers = []

    async def serve(**overrides: Any) -> Any:
        cam = make_camera(**overrides)
        servers.append(await onvif_server.start(cam))
        return cam

    yield serve
    for server in servers:
        server.close()
        await server.wait_closed()


def client(cam: Any, password: str | None = None) -> onvif.OnvifClient:
    secret = cam.password if password is None else password
    return onvif.OnvifClient(cam.address, cam.http_port, "admin", secret, label="cam-f")


def request(ns: str, op: str) -> bytes:
    return (
        f'<?xml version="1.0"?><s:Envelope xmlns:s="{ns}"><s:Body>'
        f'<tds:{op} xmlns:tds="{TDS}"/></s:Body></s:Envelope>'
    ).encode()


async def test_the_simulator_can_answer_only_soap_1_1(served) -> None:
    cam = await served(soap="1.1")
    url = f"http://{cam.address}:{cam.http_port}/onvif/device_service"
    async with httpx.AsyncClient(timeout=10) as http:
        old = await http.post(url, content=request(SOAP11, "GetSystemDateAndTime"))
        new = await http.post(url, content=request(SOAP12, "GetSystemDateAndTime"))
    assert old.status_code == 200 and SOAP11 in old.text and SOAP12 not in old.text
    assert old.headers["content-type"].startswith("text/xml")
    assert new.status_code == 500 and SOAP11 in new.text
    assert "VersionMismatch" in new.text and "faultstring" in new.text


async def test_a_soap_1_1_only_camera_probes(served) -> None:
    # Media1 through onvif-zeep-async and Media2 through our SOAP client, both on 1.1.
    cam = await served(soap="1.1", media2="h265-only")
    async with client(cam) as c:
        result = await c.probe()
        assert c.soap_version.soap11
    assert result.device.manufacturer == cam.manufacturer
    got = {p.token: (p.encoding, p.service) for p in result.profiles}
    assert got == {"profile_main": ("H264", "media2"), "profile_sub": ("H265", "media2")}
    assert all(p.stream_uri.startswith(f"rtsp://{cam.address}:") for p in result.profiles)
    # A wrong password on a 1.1 camera is still an authentication error, named so.
    with pytest.raises(onvif.AuthError, match="authentication failed for cam-f"):
        async with client(cam, password="wrong") as c:
            await c.probe()


async def test_a_camera_answering_both_versions_keeps_soap_1_2(served) -> None:
    cam = await served(soap="both")
    async with client(cam) as c:
        result = await c.probe()
        assert not c.soap_version.soap11
    assert len(result.profiles) == 2


@pytest.mark.parametrize("hours", [3, -3])
async def test_a_camera_whose_clock_is_hours_off_authenticates(served, hours: int) -> None:
    # The camera takes a UsernameToken only within 10 s of its own clock.
    cam = await served(clock_offset_s=hours * 3600.0, auth_window_s=10.0, media2="on")
    async with client(cam) as c:
        result = await c.probe()
        offset = c.clock_offset_s
    assert offset is not None and abs(offset - hours * 3600) < 5, offset
    assert result.device.clock_offset_s == offset
    assert {p.service for p in result.profiles} == {"media2"}  # our SOAP client too
    # The check is real: the same token on our own clock is refused.
    soap = SoapClient("cam-f", "admin", cam.password, clock_offset_s=0.0)
    try:
        with pytest.raises(onvif.AuthError):
            await soap.call(
                f"http://{cam.address}:{cam.http_port}/onvif/media2_service",
                f"{TR2}/GetProfiles",
                f'<tr2:GetProfiles xmlns:tr2="{TR2}"/>',
            )
    finally:
        await soap.close()


async def test_http_digest_where_ws_security_is_refused(served) -> None:
    cam = await served(ws_security=False, media2="on")
    async with client(cam) as c:
        result = await c.probe()
    assert result.device.manufacturer == cam.manufacturer
    assert [p.service for p in result.profiles] == ["media2", "media2"]
    with pytest.raises(onvif.AuthError, match="authentication failed for cam-f"):
        async with client(cam, password="wrong") as c:
            await c.probe()


def test_gateway_probe_of_a_soap_1_1_camera_with_a_wrong_clock(sim_factory, capsys) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    args = [*small_sim_args(base), "--soap", "1.1", "--clock-offset", str(3 * 3600)]
    sim = sim_factory(*args, "--auth-window", "10", name="sim-soap11")
    cam = sim.cameras[0]
    target = f"{cam['address']}:{cam['http_port']}"
    cred = ["--username", cam["username"], "--password", cam["password"]]
    capsys.readouterr()
    assert probe_main([target, *cred, "--json"]) == 0  # `gateway probe`, in this process
    out = json.loads(capsys.readouterr().out)
    assert len(out["profiles"]) == 2, out
    assert all(p["stream_uri"].startswith("rtsp://") for p in out["profiles"]), out
