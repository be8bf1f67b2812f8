from __future__ import annotations

import httpx

from tests.support import ADMIN_PASSWORD


def test_health_is_open_and_api_needs_a_token(gateway_factory) -> None:
    gw = gateway_factory()
    assert httpx.get(gw.base_url + "/api/v1/health").status_code == 200
    r = httpx.get(gw.base_url + "/api/v1/auth/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    me = gw.client.get("/api/v1/auth/me").json()
    assert me == {"username": "admin", "role": "admin", "scope": ""}


def test_token_endpoint_shape_and_wrong_password(gateway_factory) -> None:
    gw = gateway_factory()
    r = httpx.post(
        gw.base_url + "/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    body = r.json()
    assert r.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["access_token"]
    bad = httpx.post(
        gw.base_url + "/api/v1/auth/token", json={"username": "admin", "password": "x"}
    )
    assert bad.status_code == 401
    assert ADMIN_PASSWORD not in gw.tail(100000)


def test_roles_and_logout(gateway_factory) -> None:
    gw = gateway_factory()
    r = gw.client.post(
        "/api/v1/auth/users", json={"username": "op", "password": "op-pass-123", "role": "viewer"}
    )
    assert r.status_code == 201
    tok = httpx.post(
        gw.base_url + "/api/v1/auth/token", json={"username": "op", "password": "op-pass-123"}
    ).json()["access_token"]
    h = {"Authorization": f"Bearer {tok}"}
    assert httpx.get(gw.base_url + "/api/v1/auth/me", headers=h).json()["role"] == "viewer"
    assert httpx.get(gw.base_url + "/api/v1/auth/users", headers=h).status_code == 403
    assert httpx.post(gw.base_url + "/api/v1/auth/logout", headers=h).status_code == 204
    assert httpx.get(gw.base_url + "/api/v1/auth/me", headers=h).status_code == 401


def test_login_is_rate_limited(gateway_factory) -> None:
    gw = gateway_factory(config={"auth": {"login_attempts_per_min": 3}})
    codes = [
        httpx.post(
            gw.base_url + "/api/v1/auth/token", json={"username": "admin", "password": "nope"}
        ).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_cookie_session_for_the_browser(gateway_factory) -> None:
    gw = gateway_factory()
    with httpx.Client(base_url=gw.base_url) as c:
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 200
        assert "httponly" in r.headers["set-cookie"].lower()
        assert c.get("/api/v1/auth/me").status_code == 200


def test_first_start_without_password_prints_one(gateway_factory, tmp_path) -> None:
    gw = gateway_factory(name="fresh", login_as_admin=False, GATEWAY_ADMIN_PASSWORD="")
    log = gw.tail(100000)
    assert "initial admin" in log
    password = log.split("password '", 1)[1].split("'", 1)[0]
    r = httpx.post(
        gw.base_url + "/api/v1/auth/token", json={"username": "admin", "password": password}
    )
    assert r.status_code == 200
    gw.stop()
    again = gateway_factory(name="fresh", login_as_admin=False, GATEWAY_ADMIN_PASSWORD="")
    assert again.tail(100000).count("initial admin") == 0  # printed once, on first start only
