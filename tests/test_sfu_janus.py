"""Viewers through Debian's Janus (streaming plugin), still on our WHEP URL.

Real parts: a ``janus`` process on this machine (config written here: HTTP transport
on 127.0.0.1, streaming plugin only, an API secret and an admin key), the gateway's
relay and WHEP router in-process over a libx264 camera hub, and aiortc WHEP clients
decoding what Janus sends them. The gateway feeds the camera to Janus once; its RTP
sender counters measure that upstream while viewers grow from 1 to 30.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.server import create_app
from gateway.app import Gateway
from gateway.config import Settings
from gateway.relay.sfu.relay import rank
from gateway.streams.hub import Hub
from tests.janus_support import JanusServer, host_ip
from tests.relay_helpers import EncodedCamera, HubStreams, WhepClient, install_streams

pytestmark = pytest.mark.timeout(180)

CAM = "cam-01"
API_SECRET = "api-secret-never-logged-7f3a"
ADMIN_KEY = "admin-key-never-logged-91c2"


async def _until(predicate: Any, timeout: float, period: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(period)
    return bool(predicate())


@contextlib.asynccontextmanager
async def _system(
    tmp_path: Path,
    servers: int = 1,
    pick: Callable[[list[str]], tuple[str, ...]] = lambda urls: (CAM,),
    srtp: bool = True,
) -> AsyncIterator[dict[str, Any]]:
    """Janus servers, a gateway whose ``relay.sfu`` lists them, libx264 cameras
    (``pick(urls)`` names them, knowing the servers' URLs)."""
    januses: list[JanusServer] = []
    hubs: dict[str, Hub] = {}
    encoders: list[EncodedCamera] = []
    clients: list[WhepClient] = []
    gw: Gateway | None = None
    http: httpx.AsyncClient | None = None
    try:
        for i in range(servers):
            (tmp_path / f"janus{i}").mkdir()
            januses.append(
                JanusServer(tmp_path / f"janus{i}", api_secret=API_SECRET, admin_key=ADMIN_KEY)
            )
        await asyncio.gather(*(asyncio.to_thread(j.start) for j in januses))
        cameras = pick([j.url for j in januses])
        sfu = {
            "url": januses[0].url,
            "more_urls": [j.url for j in januses[1:]],
            "api_secret": API_SECRET,
            "admin_key": ADMIN_KEY,
            "request_timeout_s": 3,
            "retry_s": 1,
            "linger_s": 1,
            "srtp": srtp,
        }
        relay = {"interfaces": ["127.0.0.1"], "session_timeout_s": 10, "sfu": sfu}
        settings = Settings.model_validate(
            {"data_dir": str(tmp_path / "data"), "auth": {"enabled": False}, "relay": relay}
        )
        gw = Gateway(settings)
        for n, cam in enumerate(cameras):
            hubs[cam] = Hub(f"{cam}/main")
            # Small and slow: 30 aiortc viewers decode in this one process on a shared box.
            encoders.append(
                EncodedCamera(
                    hubs[cam], width=320, height=180, fps=15, gop=15, index=5 + n, bitrate=300_000
                ).start()
            )
        install_streams(gw, HubStreams({(cam, None): hub for cam, hub in hubs.items()}))
        app = create_app(gw, manage_lifecycle=False)
        await gw.start()
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw", timeout=30
        )

        def client(addresses: tuple[str, ...] = (host_ip(),), camera: str = CAM) -> WhepClient:
            # Janus (libnice) never uses loopback: viewers offer this machine's own address.
            assert http is not None
            url = f"/api/v1/streams/{camera}/whep"
            c = WhepClient(http, url, decode_every=1000, addresses=addresses)
            clients.append(c)
            return c

        yield {
            "gw": gw,
            "hub": hubs[cameras[0]],
            "hubs": hubs,
            "janus": januses[0],
            "januses": januses,
            "client": client,
            "http": http,
        }
    finally:
        await asyncio.gather(*(c.stop(delete=False) for c in clients), return_exceptions=True)
        for encoder in encoders:
            encoder.stop()
        if gw is not None:
            await gw.stop()
        if http is not None:
            await http.aclose()
        for j in januses:
            j.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    async with _system(tmp_path) as system:
        yield system


def _feed(gw: Gateway) -> Any:
    mps = list(gw.sfu.mountpoints.values())
    assert len(mps) == 1, f"expected one feed to Janus, got {len(mps)}"
    return mps[0].feed


async def _rate(gw: Gateway, hub: Hub, seconds: float) -> tuple[float, float]:
    """(RTP bytes/s the gateway sent Janus, bytes/s the camera published) over a window."""
    feed = _feed(gw)
    b0, h0, t0 = feed.bytes_sent, hub.bytes_in, time.monotonic()
    await asyncio.sleep(seconds)
    dt = time.monotonic() - t0
    return (feed.bytes_sent - b0) / dt, (hub.bytes_in - h0) / dt


async def test_viewers_1_to_30_through_janus_cost_one_upstream_stream(
    rig: dict[str, Any],
) -> None:
    gw, hub = rig["gw"], rig["hub"]
    first = rig["client"]()
    r = await first.start()
    assert r.status_code == 201, r.text
    assert "a=ice-ufrag" in first.answer and "a=setup:passive" in first.answer
    assert await first.wait_frames(10, 30), f"no frames through Janus: {rig['janus'].tail()}"
    sessions = (await rig["http"].get("/api/v1/relay/sessions")).json()
    assert [s["via"] for s in sessions["sessions"]] == ["sfu"], sessions
    # Trickle ICE (PATCH) reaches Janus; an ICE restart is refused as for direct viewers.
    ufrag = next(
        ln.split(":", 1)[1]
        for ln in first.pc.localDescription.sdp.splitlines()
        if ln.startswith("a=ice-ufrag:")
    )
    frag = f"a=ice-ufrag:{ufrag}\r\na=mid:0\r\n"
    frag += f"a=candidate:7 1 udp 1 {host_ip()} 9 typ host\r\na=end-of-candidates\r\n"
    sdpfrag = {"Content-Type": "application/trickle-ice-sdpfrag"}
    r = await rig["http"].patch(first.location, content=frag, headers=sdpfrag)
    assert r.status_code == 204, r.text
    r = await rig["http"].patch(
        first.location, content=frag.replace(ufrag, "zzzz"), headers=sdpfrag
    )
    assert r.status_code == 422, r.text
    one, cam_rate1 = await _rate(gw, hub, 2.0)

    more = [rig["client"]() for _ in range(29)]
    for batch in range(0, 29, 10):  # offers in batches of ten, like a wall filling up
        replies = await asyncio.gather(*(c.start() for c in more[batch : batch + 10]))
        assert all(x.status_code == 201 for x in replies), [x.text for x in replies]
    everyone = [first, *more]
    oks = await asyncio.gather(*(c.wait_frames(5, 60) for c in everyone))
    assert all(oks), f"{oks.count(False)} of 30 viewers decoded nothing"
    thirty, cam_rate30 = await _rate(gw, hub, 2.0)

    status = gw.sfu.status()["sfu"]
    assert status["viewers"] == 30 and len(status["feeds"]) == 1, status
    assert gw.relay.sessions == {}, "no viewer should have gone to the direct relay"
    ratio = thirty / one
    # Per byte the camera published in the same window: its own rate varies a little.
    per_camera = (thirty / cam_rate30) / (one / cam_rate1)
    overhead = thirty / cam_rate30
    print(
        f"\nSFU upstream: 1 viewer {one * 8 / 1000:.0f} kbit/s, 30 viewers "
        f"{thirty * 8 / 1000:.0f} kbit/s, ratio {ratio:.2f} ({per_camera:.2f} per camera byte); "
        f"upstream/camera {overhead:.2f} (camera {cam_rate30 * 8 / 1000:.0f} kbit/s)"
    )
    # One stream per camera: 30 viewers cost what one did, and the upstream is one
    # copy of the camera (RTP headers and FU-A fragmentation add a few per cent).
    assert 0.8 < per_camera < 1.25, per_camera
    assert 0.9 < overhead < 1.3, overhead


async def test_hung_janus_never_hangs_an_offer_and_is_used_again_when_back(
    rig: dict[str, Any],
) -> None:
    gw, janus = rig["gw"], rig["janus"]
    sfu = gw.sfu
    first = rig["client"]()
    assert (await first.start()).status_code == 201
    assert await first.wait_frames(5, 30)
    janus.pause()  # its sockets stay open; nothing answers
    try:
        direct = rig["client"](("127.0.0.1",))
        t0 = time.monotonic()
        r = await direct.start()
        took = time.monotonic() - t0
        assert r.status_code == 201, r.text
        # request_timeout_s is 3: the offer is answered by the direct relay soon after.
        assert took < 15, f"the offer waited {took:.1f} s on a hung Janus"
        assert await direct.wait_frames(5, 30), "no frames from the direct relay"
        assert not sfu.up and len(gw.relay.sessions) == 1
    finally:
        janus.resume()
    # Back: the gateway reconnects (retry_s is 1), sweeps what it left, serves through it.
    assert await _until(lambda: sfu.up, 20), sfu.status()["sfu"]
    late = rig["client"]()
    assert (await late.start()).status_code == 201
    assert await late.wait_frames(5, 30), "no frames through Janus after it came back"
    assert [s.id for s in sfu.sessions.values()] == [late.location.rsplit("/", 1)[1]]
    backend = sfu.backends[0]
    listed = await backend.client.request(
        backend.admin, {"request": "list", "admin_key": ADMIN_KEY}
    )
    ours = [m for m in listed["list"] if m["description"].startswith(sfu.tag)]
    assert len(ours) == 1, ours  # the mountpoint from before the hang is gone


def _two_per_server(urls: list[str]) -> tuple[str, ...]:
    """Camera ids the rendezvous hash puts first on server 0, then first on server 1."""
    first: dict[int, str] = {}
    for n in range(1000):
        cam = f"cam-{n:02d}"
        first.setdefault(rank(urls, cam)[0], cam)
        if len(first) == len(urls):
            return tuple(first[i] for i in range(len(urls)))
    raise AssertionError("the hash never picked one of the servers")


def _feeds(gw: Gateway) -> dict[str, list[str]]:
    """Camera -> servers it is fed to."""
    out: dict[str, list[str]] = {}
    for (server, (camera, _pt)), _mp in gw.sfu.mountpoints.items():
        out.setdefault(camera, []).append(server)
    return out


async def test_two_janus_servers_share_cameras_by_hash_then_fail_over_then_direct(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Plain RTP to Janus here (srtp off); the other tests feed it SRTP (the default).
    async with _system(tmp_path, servers=2, pick=_two_per_server, srtp=False) as rig:
        gw, (j0, j1) = rig["gw"], rig["januses"]
        sfu = gw.sfu
        cam_a, cam_b = list(rig["hubs"])
        name = {j.url: b.name for j, b in zip((j0, j1), sfu.backends, strict=True)}
        a1, b1 = rig["client"](camera=cam_a), rig["client"](camera=cam_b)
        assert {(await c.start()).status_code for c in (a1, b1)} == {201}
        assert all(await asyncio.gather(a1.wait_frames(5, 30), b1.wait_frames(5, 30)))
        # Each camera fed once, to the server its hash names.
        assert _feeds(gw) == {cam_a: [name[j0.url]], cam_b: [name[j1.url]]}, sfu.status()

        # The last viewer of a camera leaves: its mountpoint goes after linger_s.
        await b1.stop()
        assert await _until(lambda: cam_b not in _feeds(gw), 15), sfu.status()["sfu"]

        # Server 0 dies mid-stream: camera A's next viewer goes to server 1 (next in hash
        # order), not to the direct relay.
        j0.kill()
        assert await _until(lambda: not sfu.backends[0].up, 15)
        assert await _until(
            lambda: not any(s.camera_id == cam_a for s in sfu.sessions.values()), 10
        )
        a2 = rig["client"](camera=cam_a)
        assert (await a2.start()).status_code == 201
        assert await a2.wait_frames(5, 30), "no frames through the second Janus"
        assert _feeds(gw) == {cam_a: [name[j1.url]]}, sfu.status()["sfu"]

        # Both gone: the direct relay answers at once and plays.
        j1.kill()
        assert await _until(lambda: not sfu.up, 15)
        a3 = rig["client"](("127.0.0.1",), camera=cam_a)
        t0 = time.monotonic()
        assert (await a3.start()).status_code == 201
        assert time.monotonic() - t0 < 10
        assert await a3.wait_frames(10, 30), "no frames from the direct relay"
        assert len(gw.relay.sessions) == 1 and not sfu.sessions
        status = (await rig["http"].get("/api/v1/relay/sessions")).json()
        assert status["sfu"]["up"] is False and status["sfu"]["fallbacks"]["sfu down"] >= 1
    # Neither the API secret nor the admin key was ever logged.
    assert API_SECRET not in caplog.text and ADMIN_KEY not in caplog.text
