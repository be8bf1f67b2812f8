"""The audit log (操作日志) through the HTTP API: what is recorded, who may read it, CSV.

One gateway in process with a live encoded camera behind the real FastAPI app:
logins and failed logins, a live view from when to when (WHEP open and close), an
alarm acknowledgement, user and setting changes all land in the log; an admin
searches by user, camera, action and time; a viewer reads only its own entries;
the CSV export is UTF-8 with a BOM and defuses formulas; the table refuses edits.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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

ADMIN_PW = "audit-admin-pw"
VIEWER_PW = "viewer-password-1"


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    monkeypatch.setenv("GATEWAY_ADMIN_PASSWORD", ADMIN_PW)
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "relay": {"interfaces": ["127.0.0.1"], "source_wait_s": 5},
            "audit": {"retention_days": 30},
        }
    )
    gw = Gateway(settings)
    live = Hub("cam-01/main")
    camera = EncodedCamera(live, width=320, height=180, gop=10).start()
    install_streams(gw, HubStreams({("cam-01", None): live}))
    app = create_app(gw, manage_lifecycle=False)
    await gw.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    try:
        yield {"gw": gw, "http": http}
    finally:
        camera.stop()
        await gw.stop()
        await http.aclose()


async def _login(http: httpx.AsyncClient, user: str, password: str) -> dict[str, str]:
    r = await http.post("/api/v1/auth/token", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _entries(http: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> list[dict]:
    r = await http.get("/api/v1/audit", params=params, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["entries"]


async def test_operator_day_is_recorded_and_searchable(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    admin = await _login(http, "admin", ADMIN_PW)
    r = await http.post(
        "/api/v1/auth/users",
        json={"username": "viewer1", "password": VIEWER_PW, "role": "viewer"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    bad = await http.post("/api/v1/auth/token", json={"username": "viewer1", "password": "nope"})
    assert bad.status_code == 401
    viewer = await _login(http, "viewer1", VIEWER_PW)

    # The viewer watches cam-01, then leaves.
    r = await http.post(
        "/api/v1/streams/cam-01/whep",
        content=await _offer(),
        headers={**viewer, "Content-Type": "application/sdp"},
    )
    assert r.status_code == 201, r.text
    session = r.headers["Location"]
    assert (await http.delete(session, headers=viewer)).status_code == 200

    # An alarm on cam-01, acknowledged by the admin.
    ev = await http.post(
        "/api/v1/events", json={"camera": "cam-01", "type": "tamper"}, headers=admin
    )
    assert ev.status_code == 201, ev.text
    ack = await http.post(f"/api/v1/events/{ev.json()['id']}/ack", headers=admin)
    assert ack.status_code == 200, ack.text

    everything = await _entries(http, admin, limit=1000)
    actions = [e["action"] for e in everything]
    for expected in ("user_change", "login_failed", "login", "view", "view_end", "alarm_ack"):
        assert expected in actions, (expected, actions)
    # Newest first; ids grow.
    assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
    failed = next(e for e in everything if e["action"] == "login_failed")
    assert failed["user"] == "viewer1" and failed["ok"] is False and failed["client"]

    views = await _entries(http, admin, user="viewer1", camera="cam-01")
    assert {e["action"] for e in views} == {"view", "view_end"}
    end = next(e for e in views if e["action"] == "view_end")
    start = next(e for e in views if e["action"] == "view")
    assert end["detail"]["session"] == start["detail"]["session"]
    assert 0 <= end["detail"]["seconds"] < 60
    assert end["detail"]["reason"] == "viewer left"

    acks = await _entries(http, admin, action="alarm_ack")
    assert [(a["user"], a["camera"]) for a in acks] == [("admin", "cam-01")]
    in_span = await _entries(http, admin, since=before.isoformat(), action="login")
    assert {e["user"] for e in in_span} == {"admin", "viewer1"}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await _entries(http, admin, since=future) == []

    # The viewer reads its own entries only, whatever it asks for.
    mine = await _entries(http, viewer, limit=1000)
    assert mine and {e["user"] for e in mine} == {"viewer1"}
    assert await _entries(http, viewer, user="admin") == []
    r = await http.get("/api/v1/audit/export.csv", params={"user": "admin"}, headers=viewer)
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 1  # header only
    assert (await http.get("/api/v1/audit/verify", headers=viewer)).status_code == 403

    # Bad filters are clear 422s, not crashes.
    r = await http.get("/api/v1/audit", params={"action": "nonsense"}, headers=admin)
    assert r.status_code == 422 and "unknown action" in r.text
    r = await http.get("/api/v1/audit", params={"since": "yesterday"}, headers=admin)
    assert r.status_code == 422
    assert (await http.get("/api/v1/audit")).status_code == 401


async def test_csv_export_defuses_formulas_and_log_refuses_edits(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    gw: Gateway = api["gw"]
    # A hostile user name typed at the login form ends up in the log as text.
    r = await http.post("/api/v1/auth/token", json={"username": "=HYPERLINK(1)", "password": "x"})
    assert r.status_code == 401
    admin = await _login(http, "admin", ADMIN_PW)
    r = await http.get("/api/v1/audit/export.csv", headers=admin)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["id", "time", "user", "action", "camera", "ok", "client", "detail"]
    users = {row[2] for row in rows[1:]}
    assert "'=HYPERLINK(1)" in users and "admin" in users
    assert all(not row[2].startswith("=") for row in rows[1:])

    # Append-only: the table itself refuses an edit or a fresh delete.
    conn = sqlite3.connect(gw.data_dir / "gateway.db")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit SET user = 'nobody'")
        with pytest.raises(sqlite3.IntegrityError, match="younger than a day"):
            conn.execute("DELETE FROM audit")
    finally:
        conn.close()
    r = await http.get("/api/v1/audit/verify", headers=admin)
    assert r.status_code == 200 and r.json()["intact"] is True and r.json()["checked"] >= 2
