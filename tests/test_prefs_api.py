from __future__ import annotations

import httpx

from tests.support import login


def test_wall_layout_is_kept_per_user_and_validated(gateway_factory) -> None:
    gw = gateway_factory()
    assert gw.client.get("/api/v1/ui/layout").json() == {
        "layout": 4,
        "tiles": [],
        "auto_switch": True,
    }
    wall = {"layout": 9, "tiles": [{"ref": "village-1/cam-01", "variant": "low"}, None]}
    r = gw.client.put("/api/v1/ui/layout", json=wall)
    assert r.status_code == 200, r.text
    assert gw.client.get("/api/v1/ui/layout").json()["tiles"][0]["variant"] == "low"
    bad = gw.client.put("/api/v1/ui/layout", json={"layout": 5})
    assert bad.status_code == 422 and "layout" in bad.text
    too_many = gw.client.put("/api/v1/ui/layout", json={"layout": 16, "tiles": [None] * 17})
    assert too_many.status_code == 422
    # Another user has their own.
    gw.client.post(
        "/api/v1/auth/users", json={"username": "op", "password": "op-pass-123", "role": "viewer"}
    )
    other = httpx.Client(
        base_url=gw.base_url,
        headers={"Authorization": f"Bearer {login(gw.base_url, 'op', 'op-pass-123')}"},
    )
    assert other.get("/api/v1/ui/layout").json()["layout"] == 4
    # A machine token has no page to keep.
    machine = gw.client.post("/api/v1/auth/api-tokens", json={"name": "nvr"}).json()
    r = httpx.get(
        gw.base_url + "/api/v1/ui/layout",
        headers={"Authorization": f"Bearer {machine['access_token']}"},
    )
    assert r.status_code == 400
