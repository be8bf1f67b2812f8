"""``/api/v1/gb28181/upstream`` on a real ``gateway run`` process registered to SIPp
platforms: live status, add/change/remove at run time, passwords never shown or logged,
unregister on shutdown."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gb28181_support import DEVICE_ID, DOMAIN, HOST, SERVER_ID, Sipp, free_port

PASSWORD = "s3cret-pw"


@pytest.fixture
def platforms(tmp_path: Path) -> Iterator[list[Sipp]]:
    started: list[Sipp] = []
    yield started
    for s in started:
        s.stop()


def _platform(tmp_path: Path, started: list[Sipp], name: str) -> Sipp:
    sipp = Sipp(
        "gb_platform_uas.xml",
        tmp_path,
        *("-key", "user", DEVICE_ID, "-key", "pass", PASSWORD),
        *("-trace_msg", "-message_file", str(tmp_path / f"{name}.msgs")),
    )
    started.append(sipp)
    return sipp


def _upstream(uid: str, port: int) -> dict[str, Any]:
    return {
        "id": uid,
        "server_id": SERVER_ID,
        "domain": DOMAIN,
        "host": HOST,
        "port": port,
        "device_id": DEVICE_ID,
        "password": PASSWORD,
        "local_host": HOST,
        "keepalive_s": 1,
    }


def _state(gw: Any, uid: str) -> str:
    r = gw.client.get(f"/api/v1/gb28181/upstream/{uid}")
    assert r.status_code == 200, r.text
    assert PASSWORD not in r.text and r.json()["password_set"] is True
    return str(r.json()["status"]["state"])


def _wait_state(gw: Any, uid: str, want: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (state := _state(gw, uid)) != want:
        assert time.monotonic() < deadline, f"{uid} stayed {state}, wanted {want}"
        time.sleep(0.1)


def test_upstream_api_shows_live_status_and_changes_platforms_at_run_time(
    tmp_path: Path, platforms: list[Sipp], gateway_factory: Any
) -> None:
    county = _platform(tmp_path, platforms, "county")
    city = _platform(tmp_path, platforms, "city")
    gw = gateway_factory(
        {"gb28181": {"upstream": [_upstream("county", county.port)], "sip_t1_s": 0.05}}
    )
    _wait_state(gw, "county", "online")
    listed = gw.client.get("/api/v1/gb28181/upstream").json()
    assert listed["configured"] is True and [u["id"] for u in listed["upstream"]] == ["county"]

    # Add a second platform at run time: it registers too.
    r = gw.client.post("/api/v1/gb28181/upstream", json=_upstream("city", city.port))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/api/v1/gb28181/upstream/city"
    assert PASSWORD not in r.text
    _wait_state(gw, "city", "online")
    dup = gw.client.post("/api/v1/gb28181/upstream", json=_upstream("city", city.port))
    assert dup.status_code == 400 and "exists" in dup.text
    bad = gw.client.post(
        "/api/v1/gb28181/upstream", json=_upstream("x", city.port) | {"server_id": "12"}
    )
    assert bad.status_code == 400 and "server_id" in bad.text

    # Change: a wrong password makes SIPp answer 403, shown as the last error.
    r = gw.client.patch("/api/v1/gb28181/upstream/city", json={"password": "wrong-one-42"})
    assert r.status_code == 200 and "wrong-one-42" not in r.text
    deadline = time.monotonic() + 20
    while (
        "403"
        not in (status := gw.client.get("/api/v1/gb28181/upstream/city").json())["status"][
            "last_error"
        ]
    ):
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    bad_patch = gw.client.patch("/api/v1/gb28181/upstream/city", json={"transport": "sctp"})
    assert bad_patch.status_code == 400 and "transport" in bad_patch.text
    assert gw.client.patch("/api/v1/gb28181/upstream/nope", json={}).status_code == 404

    # Remove it.
    assert gw.client.delete("/api/v1/gb28181/upstream/city").status_code == 204
    assert gw.client.get("/api/v1/gb28181/upstream/city").status_code == 404
    assert gw.client.delete("/api/v1/gb28181/upstream/city").status_code == 404

    # Stopping the gateway unregisters from the county platform.
    assert gw.stop(signal.SIGTERM, timeout=30) in (0, -signal.SIGTERM)
    assert "Expires: 0" in (tmp_path / "county.msgs").read_text(errors="replace")
    log = gw.tail(10**7)
    assert PASSWORD not in log and "wrong-one-42" not in log
    stored = (gw.data_dir / "gb28181_upstreams.json").stat().st_mode & 0o777
    assert stored == 0o600


def test_upstream_api_without_gb28181_configured(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gateway.api.server import create_app
    from gateway.app import Gateway
    from gateway.config import parse_settings

    settings = parse_settings({"data_dir": str(tmp_path), "auth": {"enabled": False}})
    gw = Gateway(settings)
    assert gw.gb28181 is None  # not built when gb28181 is not configured
    with TestClient(create_app(gw, manage_lifecycle=False)) as client:
        assert client.get("/api/v1/gb28181/upstream").json() == {
            "configured": False,
            "upstream": [],
        }
        r = client.post("/api/v1/gb28181/upstream", json=_upstream("a", free_port()))
        assert r.status_code == 409 and "gb28181" in r.text
        assert client.get("/api/v1/gb28181/upstream/a").status_code == 404
    gw.db.close()
