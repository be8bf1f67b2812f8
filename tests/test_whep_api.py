"""The WHEP HTTP surface: status codes, headers and errors for hostile or odd requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from gateway.api.server import create_app
from gateway.app import Gateway
from gateway.config import Settings
from gateway.relay.ice import host_addresses
from gateway.streams.hub import Hub
from tests.relay_helpers import EncodedCamera, HubStreams, install_streams

URL = "/api/v1/streams/cam-01/whep"
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "relay": {
                "interfaces": ["127.0.0.1"],
                "source_wait_s": 0.5,
                "ice_servers": [
                    {"urls": ["stun:stun.example.net:3478"]},
                    {
                        "urls": ["turn:turn.example.net:3478?transport=udp"],
                        "username": "u1",
                        "credential": "turn-secret",
                    },
                ],
            },
        }
    )
    gw = Gateway(settings)
    live, dark = Hub("cam-01/main"), Hub("cam-02/main")
    camera = EncodedCamera(live, width=320, height=180, gop=25).start()
    streams = HubStreams({("cam-01", None): live, ("cam-02", None): dark})
    install_streams(gw, streams)
    gw.auth.create_user("viewer1", "viewer-password-1", "viewer")
    token = gw.auth.issue("viewer1", "session", ttl=600).token
    app = create_app(gw, manage_lifecycle=False)
    await gw.start()
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gw",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        yield {"gw": gw, "http": http, "streams": streams}
    finally:
        camera.stop()
        await gw.stop()
        await http.aclose()


async def _offer(with_video: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video" if with_video else "audio", direction="recvonly")
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_post_needs_a_login(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL, content=await _offer(), headers={**SDP, "Authorization": ""})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "empty body"),
        ("hello, I am not SDP", "must start with 'v=0'"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no video m-line"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n", "ICE"),
    ],
)
async def test_bad_offer_is_400_with_a_reason(
    api: dict[str, Any], body: str, fragment: str
) -> None:
    r = await api["http"].post(URL, content=body, headers=SDP)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["detail"]
    assert api["streams"].leases == 0, "a bad offer must not lease the camera"


async def test_binary_garbage_is_400(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL, content=bytes(range(256)) * 4, headers=SDP)
    assert r.status_code == 400


async def test_offer_without_h264_is_400(api: dict[str, Any]) -> None:
    offer = await _offer()
    vp8_only = "\n".join(
        ln
        for ln in offer.splitlines()
        if "H264" not in ln and "profile-level-id" not in ln and "apt=" not in ln
    )
    r = await api["http"].post(URL, content=vp8_only, headers=SDP)
    assert r.status_code == 400
    assert "H.264" in r.json()["detail"]


async def test_audio_only_offer_is_400(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL, content=await _offer(with_video=False), headers=SDP)
    assert r.status_code == 400


async def test_wrong_content_type_is_415(api: dict[str, Any]) -> None:
    r = await api["http"].post(
        URL, content=await _offer(), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 415


async def test_huge_body_is_413(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL, content=b"v=0\r\n" + b"a=x\r\n" * 20000, headers=SDP)
    assert r.status_code == 413


async def test_unknown_camera_is_404(api: dict[str, Any]) -> None:
    r = await api["http"].post(
        "/api/v1/streams/no-such-cam/whep", content=await _offer(), headers=SDP
    )
    assert r.status_code == 404
    assert "no-such-cam" in r.json()["detail"]


async def test_camera_without_video_is_503_with_reason(api: dict[str, Any]) -> None:
    r = await api["http"].post("/api/v1/streams/cam-02/whep", content=await _offer(), headers=SDP)
    assert r.status_code == 503
    assert "offline" in r.json()["detail"]
    assert "retry-after" in r.headers
    assert api["streams"].leases == 0


async def test_unknown_variant_is_400(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL + "?variant=huge", content=await _offer(), headers=SDP)
    assert r.status_code == 400


async def test_low_variant_missing_is_503(api: dict[str, Any]) -> None:
    r = await api["http"].post(URL + "?variant=low", content=await _offer(), headers=SDP)
    assert r.status_code == 503


async def test_options_lists_ice_servers_without_credentials(api: dict[str, Any]) -> None:
    r = await api["http"].options(URL, headers={"Authorization": ""})
    assert r.status_code == 204
    links = r.headers.get_list("link")
    assert '<stun:stun.example.net:3478>; rel="ice-server"' in links
    assert not any("turn-secret" in link for link in links)
    assert r.headers["accept-post"] == "application/sdp"


async def test_post_patch_delete_lifecycle(api: dict[str, Any]) -> None:
    http = api["http"]
    r = await http.post(URL, content=await _offer(), headers=SDP)
    assert r.status_code == 201, r.text
    location, etag = r.headers["location"], r.headers["etag"]
    assert location.startswith(URL + "/")
    assert any("turn-secret" in link for link in r.headers.get_list("link"))
    assert api["streams"].leases == 1

    frag = "a=ice-ufrag:{}\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
    ufrag = next(
        ln.split(":", 1)[1] for ln in (await _offer()).splitlines() if ln.startswith("a=ice-ufrag")
    )
    patch = {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": etag}
    session = next(iter(api["gw"].relay.sessions.values()))
    own = frag.format(session.remote_ufrag)
    assert (await http.patch(location, content=own, headers=patch)).status_code == 204
    # A different ufrag is an ICE restart, which this relay does not do.
    restart = await http.patch(location, content=frag.format(ufrag), headers=patch)
    assert restart.status_code == 422
    stale = await http.patch(location, content=own, headers={**patch, "If-Match": '"old"'})
    assert stale.status_code == 412
    wrong_type = await http.patch(location, content=own, headers=SDP)
    assert wrong_type.status_code == 415

    other_camera = location.replace("cam-01", "cam-02")
    assert (await http.delete(other_camera)).status_code == 404
    assert (await http.delete(location)).status_code == 200
    assert api["streams"].leases == 0
    assert (await http.delete(location)).status_code == 404
    assert (await http.patch(location, content=own, headers=patch)).status_code == 404


async def test_session_limit_is_503(api: dict[str, Any]) -> None:
    api["gw"].relay.settings.max_sessions = 1
    http = api["http"]
    first = await http.post(URL, content=await _offer(), headers=SDP)
    assert first.status_code == 201
    second = await http.post(URL, content=await _offer(), headers=SDP)
    assert second.status_code == 503
    assert "too many" in second.json()["detail"]
