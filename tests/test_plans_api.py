"""Plans (预案) through the HTTP API, with a simulated ONVIF camera and real processes.

A plan sends the camera to a preset (read back through the simulator's own ONVIF PTZ
service, as any ONVIF client would), records it (segments appear in the recorder's
index), notifies a webhook and is audited; launched by hand and by a linkage rule. A
plan naming a camera outside an operator's subtree is refused, as is a plan that
does nothing or names an unknown camera, and nothing is half created.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.cascade_support import wait_for
from tests.support import GatewayProcess, SimProcess, login, small_sim_args

SCOPED_PW = "scoped-operator-pw"


def _ptz(cam: dict[str, Any], *calls: tuple[str, dict[str, Any]]) -> Any:
    """Run ONVIF PTZ calls against the simulator; returns the last call's answer."""
    from onvif import ONVIFCamera

    async def run() -> Any:
        client = ONVIFCamera(cam["address"], cam["http_port"], cam["username"], cam["password"])
        try:
            await client.update_xaddrs()
            ptz = await client.create_ptz_service()
            out = None
            for name, params in calls:
                out = await getattr(ptz, name)({"ProfileToken": "profile_main", **params})
            return out
        finally:
            await client.close()

    # Playwright's sync API (the browser tests use this too) runs a loop in this thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=30)


def _pan(cam: dict[str, Any]) -> float:
    return float(_ptz(cam, ("GetStatus", {})).Position.PanTilt.x)


def _absolute(x: float, y: float) -> tuple[str, dict[str, Any]]:
    return ("AbsoluteMove", {"Position": {"PanTilt": {"x": x, "y": y}, "Zoom": {"x": 0.0}}})


class Hooks:
    """A webhook receiver on loopback: every POSTed JSON body, in order."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?key=k1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One simulator and one gateway for the module; each test names its own plans."""
    tmp = tmp_path_factory.mktemp("plans")
    sim = SimProcess(tmp, *small_sim_args("127.0.81.1", fps=10, gop=10))
    cam = sim.cameras[0]
    gw: GatewayProcess | None = None
    hooks: Hooks | None = None
    try:
        gw = GatewayProcess(
            tmp,
            {
                "cameras": [
                    {
                        "id": "cam-01",
                        "name": "村口",
                        "onvif": {
                            "host": cam["address"],
                            "port": cam["http_port"],
                            "username": cam["username"],
                            "password": cam["password"],
                        },
                    }
                ],
                "discovery": {"interval_s": 0},
                "recording": {"mode": "off", "segment_s": 2},
            },
        )
        gateway = gw
        wait_for(
            lambda: gateway.client.get("/api/v1/cameras/cam-01").json().get("ptz"),
            30,
            "the ONVIF camera with PTZ registered",
        )
        hooks = Hooks()
        yield {"gw": gw, "cam": cam, "hooks": hooks}
    finally:
        if hooks is not None:
            hooks.close()
        if gw is not None:
            gw.stop()
        sim.stop()


def _plan(hook_url: str, preset: str, name: str = "村口警情") -> dict[str, Any]:
    return {
        "name": name,
        "layout": 4,
        "wall": ["cam-01"],
        "presets": [{"camera": "cam-01", "preset": preset}],
        "record": ["cam-01"],
        "record_s": 4,
        "message": "村口报警：请查看画面 / check the village gate",
        "notify": {"webhook": hook_url},
    }


def test_plan_moves_ptz_records_notifies_and_is_audited(system: dict[str, Any]) -> None:
    gw: GatewayProcess = system["gw"]
    cam, hooks = system["cam"], system["hooks"]
    # A preset at pan 0.5 on the camera itself, then the camera back home.
    answer = _ptz(cam, _absolute(0.5, 0.25), ("SetPreset", {"PresetName": "gate"}))
    token = str(answer)
    _ptz(cam, _absolute(0.0, 0.0))
    assert abs(_pan(cam)) < 0.01

    r = gw.client.post("/api/v1/plans", json=_plan(hooks.url, token))
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["name"] == "村口警情" and plan["created_by"] == "admin"
    assert "村口警情" in [p["name"] for p in gw.client.get("/api/v1/plans").json()]

    r = gw.client.post(f"/api/v1/plans/{plan['id']}/launch")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["ok"] is True, out
    assert {s["step"] for s in out["steps"]} == {"wall", "preset", "record", "webhook"}
    wait_for(lambda: abs(_pan(cam) - 0.5) < 0.01, 10, "the camera at the plan's preset")
    mine = [h for h in hooks.received if h["data"]["plan"] == "村口警情"]
    assert mine and mine[0]["data"]["message"].startswith("村口报警")

    def segments() -> list[Any]:
        got = gw.client.get("/api/v1/recordings", params={"camera": "cam-01"}).json()
        return got["segments"]

    wait_for(segments, 30, "the plan's recording in the recorder index", every=0.5)
    events = gw.client.get("/api/v1/events", params={"type": "plan"}).json()
    events = [e for e in events if e["data"]["plan"] == "村口警情"]
    assert events and events[0]["data"]["cameras"] == ["cam-01"]
    assert all("url" not in s for s in events[0]["data"].get("steps", []))  # no webhook key

    # By a linkage rule: an alarm on cam-01 launches the plan again.
    _ptz(cam, _absolute(0.0, 0.0))
    rule = {"name": "村口报警", "match": {"camera": "cam-01", "type": "alarm"}, "plan": "村口警情"}
    r = gw.client.put("/api/v1/linkage", json=[{**rule, "cooldown_s": 0, "record_s": 0}])
    assert r.status_code == 200, r.text
    assert gw.client.post("/api/v1/events", json={"camera": "cam-01", "type": "alarm"}).is_success
    wait_for(lambda: abs(_pan(cam) - 0.5) < 0.01, 15, "the linkage-launched plan's preset")

    def launches() -> list[dict[str, Any]]:
        got = gw.client.get("/api/v1/audit", params={"action": "plan_launch"}).json()
        ours = [e for e in got["entries"] if e["detail"]["plan"] == "村口警情"]
        return ours if len(ours) >= 2 else []

    entries = wait_for(launches, 15, "both launches in the audit log")
    by_rule, by_hand = entries[0], entries[1]
    assert by_hand["user"] == "admin" and by_hand["detail"]["source"] == "manual"
    assert by_rule["user"] == "linkage:村口报警" and by_rule["detail"]["rule"] == "村口报警"
    assert by_hand["ok"] is True and by_hand["detail"]["cameras"] == ["cam-01"]
    assert len([h for h in hooks.received if h["data"]["plan"] == "村口警情"]) == 2
    changes = gw.client.get("/api/v1/audit", params={"action": "plan_change"}).json()
    ops = [e["detail"]["op"] for e in changes["entries"] if e["detail"]["plan"] == "村口警情"]
    assert ops == ["create"]


def test_bad_plans_and_plans_outside_the_operators_area_are_refused(
    system: dict[str, Any],
) -> None:
    gw: GatewayProcess = system["gw"]
    hooks = system["hooks"]
    good = _plan(hooks.url, "preset_1", name="备用预案")
    r = gw.client.post("/api/v1/plans", json=good)
    assert r.status_code == 201, r.text
    plan_id = r.json()["id"]

    def names() -> list[str]:
        return sorted(p["name"] for p in gw.client.get("/api/v1/plans").json())

    before = names()

    bad = [
        ({**good, "name": "x", "wall": ["cam-99"], "presets": [], "record": []}, "unknown camera"),
        ({"name": "空预案"}, "does nothing"),
        ({**good, "name": "y", "layout": 1, "wall": ["cam-01", "cam-01"]}, "do not fit"),
        ({**good, "name": "z", "record_s": 0}, "record_s"),
        ({**good, "name": "w", "notify": {"webhook": "ftp://x"}}, "notify"),
    ]
    for body, why in bad:
        r = gw.client.post("/api/v1/plans", json=body)
        assert r.status_code == 422, (why, r.text)
        assert why in r.text, (why, r.text)
    assert gw.client.post("/api/v1/plans", json=good).status_code == 409  # same name
    assert gw.client.post("/api/v1/plans/999/launch").status_code == 404
    assert names() == before  # nothing half created

    # An operator of another village: cannot create, see, launch or delete this plan.
    r = gw.client.post(
        "/api/v1/auth/users",
        json={"username": "op9", "password": SCOPED_PW, "role": "operator", "scope": "village-9"},
    )
    assert r.status_code == 201, r.text
    op = {"Authorization": f"Bearer {login(gw.base_url, 'op9', SCOPED_PW)}"}
    with httpx.Client(base_url=gw.base_url, headers=op, timeout=30) as client:
        r = client.post("/api/v1/plans", json={**good, "name": "越权"})
        assert r.status_code == 403 and "outside your area" in r.text
        assert client.get("/api/v1/plans").json() == []  # none inside village-9
        r = client.post(f"/api/v1/plans/{plan_id}/launch")
        assert r.status_code == 403 and "cam-01" in r.text
        assert client.delete(f"/api/v1/plans/{plan_id}").status_code == 404
    assert names() == before
    launches = gw.client.get("/api/v1/audit", params={"action": "plan_launch"}).json()
    assert [e for e in launches["entries"] if e["detail"]["plan"] == "备用预案"] == []
