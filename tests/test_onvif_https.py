"""ONVIF over HTTPS with a camera's self-signed certificate: refused unless allowed, pinned on
first use, shown, and a different certificate afterwards refused naming both fingerprints.

A real ``gateway sim --https`` process (a new self-signed certificate on every start), our
real clients (``gateway probe``, the gateway's camera API, snapshot fetches); no mocks.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.cameras import onvif
from gateway.cameras.cli import probe_main
from gateway.cameras.model import Camera, apply_config
from gateway.cameras.tls import TlsError, TlsPolicy, normalize_fingerprint, pretty
from gateway.config import CameraConfig
from tests.support import small_sim_args

SECRET = "Pw-https-7f3a9c"  # the camera's password: must never reach a log or an answer


def _base() -> str:
    return f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"


def _sim_args(base: str) -> list[str]:
    return [*small_sim_args(base, fps=5), "--https", "--password", SECRET]


def _probe(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    cam: dict[str, Any],
    *a: str,
) -> tuple[int, str, str]:
    monkeypatch.setenv("GATEWAY_PROBE_PASSWORD", SECRET)
    target = f"{cam['address']}:{cam['http_port']}"
    code = probe_main([target, "-u", "admin", "--timeout", "20", *a])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    return code, out, err


def test_fingerprint_forms() -> None:
    fp = "ab" * 32
    assert normalize_fingerprint(pretty(fp)) == fp
    assert normalize_fingerprint(" " + fp.upper() + " ") == fp
    for bad in ("ab" * 31, "zz" * 32, "", "ab" * 33):
        with pytest.raises(ValueError, match="64 hex"):
            normalize_fingerprint(bad)
    # One ssl= object per pin: aiohttp pools keep-alive connections by it.
    policy = TlsPolicy(trust_on_first_use=True)
    unpinned = policy.aiohttp_ssl()
    assert policy.aiohttp_ssl() is unpinned
    policy.learned = fp
    assert policy.aiohttp_ssl() is policy.aiohttp_ssl() is not unpinned


def test_probe_over_https_refuses_then_pins_and_shows_the_fingerprint(
    sim_factory, capsys, monkeypatch
) -> None:
    sim = sim_factory(*_sim_args(_base()), name="sim-https")
    cam = sim.cameras[0]
    fp = cam["tls_fingerprint"]
    assert cam["onvif_url"].startswith("https://") and len(fp) == 64

    # Plain HTTP to the HTTPS port: the error says the camera answers HTTPS.
    code, _, err = _probe(capsys, monkeypatch, cam)
    assert code != 0
    assert "answers HTTPS" in err and "--https" in err and fp in err, err

    # Without the option: refused, saying the certificate is self-signed and how to allow it.
    code, _, err = _probe(capsys, monkeypatch, cam, "--https")
    assert code != 0
    assert "self-signed" in err and fp in err, err
    assert "--tls-trust-self-signed" in err and "tls_fingerprint" in err, err

    # Trust on first use: probed, every service reached over https, the fingerprint shown.
    code, out, err = _probe(capsys, monkeypatch, cam, "--tls-trust-self-signed", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["tls_fingerprint"] == fp
    assert result["device"]["manufacturer"] == "GatewaySim"
    assert [p["token"] for p in result["profiles"]] == ["profile_main", "profile_sub"]
    assert all(x.startswith("https://") for x in result["services"].values()), result
    assert result["snapshot_uri"].startswith("https://")

    # Pinned (in the form openssl prints it): accepted, and the table shows it.
    code, out, err = _probe(capsys, monkeypatch, cam, "--tls-fingerprint", pretty(fp))
    assert code == 0, err
    assert f"HTTPS certificate SHA-256: {fp}" in out

    # Another pin: refused, naming both.
    other = "0" * 64
    code, _, err = _probe(capsys, monkeypatch, cam, "--tls-fingerprint", other)
    assert code != 0
    assert "changed" in err and other in err and fp in err, err


def test_snapshot_over_https_honours_the_pin(sim_factory) -> None:
    sim = sim_factory(*_sim_args(_base()), name="sim-snap")
    cam = sim.cameras[0]
    fp, url = cam["tls_fingerprint"], cam["snapshot_url"]

    async def fetch(tls: TlsPolicy | None) -> bytes:
        return await onvif.fetch_snapshot(url, "admin", SECRET, timeout=20, tls=tls)

    assert asyncio.run(fetch(TlsPolicy(fingerprint=fp))).startswith(b"\xff\xd8")
    with pytest.raises(TlsError, match="self-signed"):
        asyncio.run(fetch(None))
    with pytest.raises(TlsError, match="changed") as caught:
        asyncio.run(fetch(TlsPolicy(fingerprint="1" * 64)))
    assert fp in str(caught.value) and "1" * 64 in str(caught.value)


def _wait_status(gw: Any, cid: str, want: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = gw.client.get(f"/api/v1/cameras/{cid}").json()
        if body.get("status") == want:
            return body
        assert time.monotonic() < deadline, (body, gw.tail())
        time.sleep(0.2)


def test_camera_api_pins_on_first_use_and_refuses_a_new_certificate(
    sim_factory, gateway_factory, tmp_path: Path
) -> None:
    base = _base()
    args = [*small_sim_args(base, cameras=2, fps=5, wsd=True), "--https", "--password", SECRET]
    sim = sim_factory(*args, name="sim-api")
    cam, other = sim.cameras
    first = cam["tls_fingerprint"]
    gw = gateway_factory({"discovery": {"interval_s": 0, "timeout_s": 1}}, name="gw-https")
    onvif_in = {
        "host": cam["address"],
        "port": cam["http_port"],
        "username": "admin",
        "password": SECRET,
        "https": True,
    }

    # https without permission for a self-signed certificate: the camera says why.
    r = gw.client.post("/api/v1/cameras", json={"id": "cam-tls", "onvif": onvif_in})
    assert r.status_code == 201, r.text
    body = _wait_status(gw, "cam-tls", "error")
    assert "self-signed" in body["reason"] and first in body["reason"], body
    assert body["onvif"]["tls_fingerprint"] is None

    # Allowed: probed over https and the certificate pinned, shown in the API.
    r = gw.client.patch("/api/v1/cameras/cam-tls", json={"onvif": {"tls_trust_self_signed": True}})
    assert r.status_code == 200, r.text
    body = _wait_status(gw, "cam-tls", "online")
    assert body["onvif"]["tls_fingerprint"] == first
    assert body["onvif"]["https"] is True and body["vendor"] == "GatewaySim"
    assert len(body["profiles"]) == 2
    presets = gw.client.get("/api/v1/cameras/cam-tls/presets")  # PTZ over the pinned https
    assert presets.status_code == 200, presets.text

    # Found by discovery with an https XAddr: added with https on, refused until allowed.
    scan = {"ranges": [base.rpartition(".")[0] + ".0/30"]}
    assert gw.client.post("/api/v1/discovery", json=scan).status_code == 202
    deadline = time.monotonic() + 60
    while (status := gw.client.get("/api/v1/discovery").json())["state"] != "done":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    found = {d["address"]: d for d in status["results"]}
    assert found[cam["address"]]["camera"] == "cam-tls", status
    add = {"address": other["address"], "username": "admin", "password": SECRET}
    r = gw.client.post("/api/v1/discovery/add", json=add)
    assert r.status_code == 201, r.text
    assert r.json()["onvif"]["https"] is True and r.json()["status"] == "error", r.json()
    assert other["tls_fingerprint"] in r.json()["reason"] and "self-signed" in r.json()["reason"]

    # The camera comes back with another certificate: refused, both fingerprints named.
    sim.stop()
    sim = sim_factory(*args, name="sim-api-2")
    second = sim.cameras[0]["tls_fingerprint"]
    assert second != first
    r = gw.client.post("/api/v1/cameras/cam-tls/refresh")
    assert r.status_code == 200, r.text
    body = _wait_status(gw, "cam-tls", "error")
    assert "changed" in body["reason"], body
    assert first in body["reason"] and second in body["reason"], body
    assert body["onvif"]["tls_fingerprint"] == first  # still the pinned one: no silent accept
    presets = gw.client.get("/api/v1/cameras/cam-tls/presets")
    assert presets.status_code == 502 and second in presets.text, presets.text

    text = json.dumps(gw.client.get("/api/v1/cameras/cam-tls").json())
    assert SECRET not in text
    log = (tmp_path / "gw-https.log").read_text(encoding="utf-8", errors="replace")
    assert "pinned" in log and first in log  # the fingerprint is logged, the password never
    assert SECRET not in log


def test_a_config_file_camera_keeps_the_pin_learned_on_first_use() -> None:
    first_use = {"host": "10.0.0.5", "port": 443, "https": True, "tls_trust_self_signed": True}
    cam = Camera(id="cam-1")
    apply_config(cam, CameraConfig(id="cam-1", onvif=first_use))
    assert cam.onvif is not None and cam.onvif["https"] is True
    assert cam.onvif["tls_fingerprint"] is None
    cam.onvif["tls_fingerprint"] = "ab" * 32  # learned by the first probe
    apply_config(cam, CameraConfig(id="cam-1", onvif=first_use))  # a restart
    assert cam.onvif["tls_fingerprint"] == "ab" * 32
    apply_config(cam, CameraConfig(id="cam-1", onvif={**first_use, "host": "10.0.0.6"}))
    assert cam.onvif["tls_fingerprint"] is None  # another camera: nothing carried over
    pinned = {"host": "10.0.0.5", "port": 443, "https": True, "tls_fingerprint": pretty("cd" * 32)}
    apply_config(cam, CameraConfig(id="cam-1", onvif=pinned))
    assert cam.onvif["tls_fingerprint"] == "cd" * 32
    with pytest.raises(ValueError, match="tls_fingerprint"):
        CameraConfig(id="cam-1", onvif={**pinned, "tls_fingerprint": "not-a-fingerprint"})
