from __future__ import annotations

import httpx


def test_oversize_body_is_refused_with_413(gateway_factory) -> None:
    gw = gateway_factory(config={"server": {"max_body_bytes": 4096}})
    r = gw.client.post("/api/v1/auth/token", content=b"x" * 10000)
    assert r.status_code == 413
    assert "larger than 4096" in r.json()["detail"]

    def chunks():
        for _ in range(10):
            yield b"y" * 1000

    r = httpx.post(gw.base_url + "/api/v1/auth/token", content=chunks())
    assert r.status_code == 413
    assert httpx.get(gw.base_url + "/api/v1/health").status_code == 200


def test_bad_json_is_a_clear_422_naming_the_field(gateway_factory) -> None:
    gw = gateway_factory()
    r = httpx.post(gw.base_url + "/api/v1/auth/token", json={"username": "admin"})
    assert r.status_code == 422
    assert any(e["loc"].endswith("password") for e in r.json()["errors"])
    r = httpx.post(
        gw.base_url + "/api/v1/auth/token",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422


def test_security_headers_and_metrics_need_a_token(gateway_factory) -> None:
    gw = gateway_factory()
    r = httpx.get(gw.base_url + "/api/v1/health")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(gw.base_url + "/metrics").status_code == 401
    text = gw.client.get("/metrics").text
    assert "# TYPE gateway_up gauge" in text
    assert 'gateway_up{id="gateway",level="site"} 1' in text
    assert "gateway_disk_free_bytes" in text
    assert "test-admin-pw" not in text
