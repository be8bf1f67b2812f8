"""Tours (轮巡) through the HTTP API: shared and personal, scope, bad input, audit.

One gateway in process behind the real FastAPI app. A viewer keeps personal tours;
only admins share; nobody sees or changes another user's personal tour; a tour with
no cameras or naming a place outside the caller's subtree is refused and nothing
is half created; every change is in the audit log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.api.server import create_app
from gateway.app import Gateway
from gateway.config import Settings

PW = "tour-password-1"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    gw = Gateway(Settings.model_validate({"data_dir": str(tmp_path / "data")}))
    app = create_app(gw, manage_lifecycle=False)
    await gw.start()
    gw.auth.create_user("boss", PW, "admin")
    gw.auth.create_user("v1", PW, "viewer")
    gw.auth.create_user("v2", PW, "viewer")
    gw.auth.create_user("east", PW, "operator", scope="village-1")
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")
    # Sessions issued directly: the login form is the audit tests' business, not this one's.
    heads = {
        user: {"Authorization": f"Bearer {gw.auth.issue(user, 'session', ttl=600).token}"}
        for user in ("boss", "v1", "v2", "east")
    }
    try:
        yield {"http": http, "as": heads}
    finally:
        await gw.stop()
        await http.aclose()


TOUR = {"name": "东村巡查", "items": ["village-1", "cam-01"], "layout": 4, "dwell_s": 10}


async def test_shared_and_personal_tours(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    who = api["as"]
    r = await http.post("/api/v1/tours", json=TOUR, headers=who["v1"])
    assert r.status_code == 201, r.text
    mine = r.json()
    assert mine["shared"] is False and mine["owner"] == "v1" and mine["items"] == TOUR["items"]
    r = await http.post("/api/v1/tours", json={**TOUR, "shared": True}, headers=who["v1"])
    assert r.status_code == 403
    r = await http.post("/api/v1/tours", json={**TOUR, "shared": True}, headers=who["boss"])
    assert r.status_code == 201, r.text
    shared = r.json()
    # The same name is fine for another owner, not twice for one.
    assert (await http.post("/api/v1/tours", json=TOUR, headers=who["v1"])).status_code == 409

    seen_v1 = (await http.get("/api/v1/tours", headers=who["v1"])).json()
    assert [(t["id"], t["shared"]) for t in seen_v1] == [(shared["id"], True), (mine["id"], False)]
    seen_v2 = (await http.get("/api/v1/tours", headers=who["v2"])).json()
    assert [t["id"] for t in seen_v2] == [shared["id"]]
    changed = {**TOUR, "dwell_s": 30}
    assert (
        await http.put(f"/api/v1/tours/{mine['id']}", json=changed, headers=who["v2"])
    ).status_code == 404
    assert (
        await http.put(f"/api/v1/tours/{shared['id']}", json=changed, headers=who["v2"])
    ).status_code == 403
    r = await http.put(f"/api/v1/tours/{mine['id']}", json=changed, headers=who["v1"])
    assert r.status_code == 200 and r.json()["dwell_s"] == 30
    assert (await http.delete(f"/api/v1/tours/{mine['id']}", headers=who["v1"])).status_code == 204

    audit = (await http.get("/api/v1/audit?action=tour_change", headers=who["boss"])).json()
    ops = [(e["user"], e["detail"]["op"]) for e in audit["entries"]]
    assert ops == [("v1", "delete"), ("v1", "update"), ("boss", "create"), ("v1", "create")]


async def test_bad_tours_are_refused_and_nothing_is_half_created(api: dict[str, Any]) -> None:
    http: httpx.AsyncClient = api["http"]
    who = api["as"]
    bad = [
        ({**TOUR, "items": []}, "at least one camera"),
        ({**TOUR, "items": ["village-1/../x"]}, "not a camera or node path"),
        ({**TOUR, "layout": 6}, "layout"),
        ({**TOUR, "dwell_s": 0}, "dwell_s"),
        ({**TOUR, "name": "  "}, "name"),
    ]
    for body, why in bad:
        r = await http.post("/api/v1/tours", json=body, headers=who["v1"])
        assert r.status_code == 422, (why, r.text)
        assert why in r.text, (why, r.text)
    # An operator of 东村 only: a tour reaching beyond it is refused.
    r = await http.post("/api/v1/tours", json=TOUR, headers=who["east"])
    assert r.status_code == 403 and "outside your area" in r.text
    ok = {**TOUR, "items": ["village-1"]}
    assert (await http.post("/api/v1/tours", json=ok, headers=who["east"])).status_code == 201
    # A shared tour reaching beyond 东村 is not listed for that operator.
    assert (
        await http.post("/api/v1/tours", json={**TOUR, "shared": True}, headers=who["boss"])
    ).status_code == 201
    listed = (await http.get("/api/v1/tours", headers=who["east"])).json()
    assert [t["items"] for t in listed] == [["village-1"]]
    assert (await http.get("/api/v1/tours", headers=who["v1"])).json() != []
    assert (await http.delete("/api/v1/tours/999", headers=who["v1"])).status_code == 404
