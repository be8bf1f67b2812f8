"""Camera passwords and login tokens never show in API responses, metrics or the log.

A real gateway (log level DEBUG, so the chattiest lines are checked too) gets
three cameras with passwords: a static camera whose ``rtsp_url`` carries
``user:pass`` (a simulated camera that demands RTSP digest auth), a static one
whose URL points at a closed port (so its errors are logged), and an ONVIF
camera added with ``POST /api/v1/cameras``. The API is exercised broadly — lists,
gets, patches, refresh, live video, metrics, errors, OpenAPI, events — and every
response body and header, and the whole log file, are searched for each secret
in raw and URL-encoded form.
"""

from __future__ import annotations

import stat
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support import ADMIN_PASSWORD, small_sim_args
from tests.test_fuzz_whep import offer

BASE_ONVIF = "127.0.162.1"
BASE_RTSP = "127.0.162.11"
PW_ONVIF = "Onv1f-Leak/Canary:7@x"
PW_ONVIF_2 = "Second-0nvif-Canary%9"
PW_RTSP = "Rtsp-Leak-Canary#42"
PW_DEAD = "Dead-End-Canary&13"
DEAD_PORT_HOST = "127.0.162.250"


def _forms(secret: str) -> set[str]:
    """The ways a secret could appear: raw, URL-encoded (both styles), JSON-escaped."""
    return {secret, quote(secret, safe=""), quote(secret), secret.replace("/", "\\/")}


class Recorder:
    """Wraps the gateway's client and keeps every response for the final search."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.seen: list[tuple[str, str]] = []

    def __call__(self, method: str, url: str, **kw: Any) -> httpx.Response:
        r = self.client.request(method, url, **kw)
        text = r.content.decode("utf-8", "replace")
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.seen.append((f"{method} {url} -> {r.status_code}", headers + "\n" + text))
        # 502/503/504 are how an offline camera answers; a 500 is a bug.
        assert r.status_code != 500, f"{method} {url}: {text[:300]}"
        return r


def _sim(sim_factory, base: str, password: str, name: str) -> Any:
    return sim_factory(
        *small_sim_args(base, fps=10),
        "--username",
        "admin",
        "--password",
        password,
        "--rtsp-auth",
        "digest",
        name=name,
    )


@pytest.mark.timeout(240)
def test_passwords_and_tokens_never_leak(sim_factory, gateway_factory) -> None:
    onvif_sim = _sim(sim_factory, BASE_ONVIF, PW_ONVIF, "sim-onvif")
    rtsp_sim = _sim(sim_factory, BASE_RTSP, PW_RTSP, "sim-rtsp")
    rtsp_cam = rtsp_sim.cameras[0]
    main_url = rtsp_cam["rtsp_main"].replace("rtsp://", f"rtsp://admin:{quote(PW_RTSP, safe='')}@")
    dead_url = f"rtsp://admin:{quote(PW_DEAD, safe='')}@{DEAD_PORT_HOST}:1/main"
    gw = gateway_factory(
        {
            "cameras": [
                {"id": "static-1", "rtsp_url": main_url, "name": "Static"},
                {"id": "dead-1", "rtsp_url": dead_url},
            ],
            "relay": {"interfaces": ["127.0.0.1"], "source_wait_s": 6},
            "discovery": {"interval_s": 0},
            "logging": {"level": "DEBUG"},
        }
    )
    api = Recorder(gw.client)

    # An ONVIF camera with a password, through the API.
    cam = onvif_sim.cameras[0]
    r = api(
        "POST",
        "/api/v1/cameras",
        json={
            "id": "onvif-1",
            "onvif": {
                "host": cam["address"],
                "port": cam["http_port"],
                "username": "admin",
                "password": PW_ONVIF,
            },
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "online", r.json()

    # A machine token and a viewer user, whose secrets must not leak either.
    api_token = api("POST", "/api/v1/auth/api-tokens", json={"name": "ci", "ttl_s": 600}).json()
    machine_token = api_token.get("access_token") or api_token.get("token")
    assert machine_token
    api(
        "POST",
        "/api/v1/auth/users",
        json={"username": "v1", "password": "Viewer-Pw-Canary-1", "role": "viewer"},
    )

    # Live video from both working cameras, so the stream URLs (with credentials) are used.
    for camera_id in ("static-1", "onvif-1", "dead-1"):
        r = api("POST", f"/api/v1/streams/{camera_id}/whep", content=offer().encode(),
                headers={"Content-Type": "application/sdp"})  # fmt: skip
        if camera_id != "dead-1":
            assert r.status_code == 201, r.text
            api("DELETE", r.headers["location"])
        else:
            assert r.status_code in (404, 503), r.text

    # Everything that reads cameras, their status, streams and errors.
    for path in (
        "/api/v1/cameras",
        "/api/v1/cameras/static-1",
        "/api/v1/cameras/onvif-1",
        "/api/v1/cameras/dead-1",
        "/api/v1/cameras/onvif-1/presets",
        "/api/v1/cameras/onvif-1/snapshot.jpg",
        "/api/v1/cameras/static-1/snapshot.jpg",
        "/api/v1/cameras/dead-1/snapshot.jpg",
        "/api/v1/streams",
        "/api/v1/relay/sessions",
        "/api/v1/tree",
        "/api/v1/events?limit=200",
        "/api/v1/recordings/status",
        "/api/v1/discovery",
        "/api/v1/cascade",
        "/api/v1/auth/me",
        "/api/v1/auth/users",
        "/api/openapi.json",
        "/metrics",
        "/api/v1/cameras/nope",
    ):
        api("GET", path)
    api("POST", "/api/v1/cameras/onvif-1/refresh")
    # Change the ONVIF password: neither the old nor the new may show anywhere.
    r = api(
        "PATCH", "/api/v1/cameras/onvif-1", json={"name": "Gate", "onvif": {"password": PW_ONVIF_2}}
    )
    assert r.status_code in (200, 422), r.text
    api("PATCH", "/api/v1/cameras/static-1", json={"rtsp_url": main_url, "name": "Static 2"})
    # Errors that echo input must not echo the password.
    where = {"host": cam["address"], "port": cam["http_port"], "username": "admin"}
    api("POST", "/api/v1/cameras", json={"id": "onvif-1", "onvif": {**where, "password": PW_ONVIF}})
    api(
        "POST", "/api/v1/cameras", json={"id": "BAD ID", "onvif": {"host": 5, "password": PW_ONVIF}}
    )
    api(
        "POST", "/api/v1/cameras", json={"id": "x-1", "rtsp_url": "http://admin:" + PW_DEAD + "@h/"}
    )
    api("POST", "/api/v1/cameras", json={"id": "wrong-pw", "onvif": {**where, "password": PW_DEAD}})
    api("PATCH", "/api/v1/cameras/static-1", json={"rtsp_url": f"rtsp://u:{PW_DEAD}@[bad"})
    api("POST", "/api/v1/auth/token", json={"username": "admin", "password": PW_DEAD})
    api(
        "POST", "/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD, "x": 1}
    )
    api("GET", "/api/v1/cameras?access_token=" + gw.token)
    httpx.get(gw.base_url + "/api/v1/cameras", headers={"Authorization": "Bearer " + PW_DEAD})
    # Metrics again after the cameras have been up a while.
    time.sleep(2)
    api("GET", "/metrics")
    api("GET", "/api/v1/events?limit=200")

    secrets = {
        "ONVIF password": PW_ONVIF,
        "second ONVIF password": PW_ONVIF_2,
        "RTSP password": PW_RTSP,
        "dead camera password": PW_DEAD,
        "admin password": ADMIN_PASSWORD,
        "viewer password": "Viewer-Pw-Canary-1",
        "admin bearer token": gw.token,
        "machine token": machine_token,
    }
    for label, body in api.seen:
        for what, secret in secrets.items():
            if what == "machine token" and label.startswith("POST /api/v1/auth/api-tokens"):
                continue  # the one place it is handed out
            for form in _forms(secret):
                assert form not in body, f"{what} appears in the response to {label}"

    gw.stop()  # flush the log, then search all of it
    log = gw.log_path.read_text("utf-8", "replace")
    assert "static-1" in log and "onvif-1" in log, "the log should talk about the cameras"
    for what, secret in secrets.items():
        for form in _forms(secret):
            assert form not in log, f"{what} appears in the gateway log: " + _context(log, form)

    secrets_file = gw.data_dir / "secrets.json"
    assert secrets_file.is_file()
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert (
        PW_ONVIF not in (gw.data_dir / "gateway.db").read_bytes().decode("latin-1")
        if (gw.data_dir / "gateway.db").exists()
        else True
    )


def _context(text: str, needle: str) -> str:
    i = text.find(needle)
    return text[max(0, i - 200) : i + 200]
