"""End to end: covering the simulated camera raises ``diagnosis`` occlusion at the gateway
(SSE and API, with a snapshot); uncovering clears it, same event id; freezing the picture
raises ``frozen``. A real ``gateway sim`` and a real ``gateway run`` on loopback; the
diagnosis samples the motion worker's frames once a second here (10 s by default).
"""

from __future__ import annotations

import random
import time
from typing import Any

from tests.support import small_sim_args
from tests.test_motion_e2e import SseReader

DIAGNOSIS = {"interval_s": 1.0, "raise_after": 2, "clear_after": 2}


def _status(gw: Any) -> dict[str, Any]:
    rows = gw.client.get("/api/v1/diagnosis").json()
    return next((r for r in rows if r["camera"] == "cam-01"), {})


def _wait(check: Any, timeout: float, what: str, gw: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {_status(gw)}"
        time.sleep(0.2)


def test_covering_the_sim_camera_raises_occlusion_and_uncovering_clears_it(
    sim_factory, gateway_factory
) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    sim = sim_factory(*small_sim_args(base, fps=10, gop=10), "--no-onvif")
    cam = sim.cameras[0]
    gw = gateway_factory(
        {
            "cameras": [{"id": "cam-01", "rtsp_url": cam["rtsp_main"]}],
            "motion": {"fps": 5},
            "diagnosis": DIAGNOSIS,
        }
    )
    sse = SseReader(gw.base_url + "/api/v1/events/stream?type=diagnosis", gw.token)
    sse.start()
    assert sse.connected.wait(10), "SSE stream did not open"
    # the reference is learnt from the healthy picture; nothing is raised on it
    _wait(lambda: _status(gw).get("samples", 0) >= 4, 40, "four samples", gw)
    healthy = _status(gw)
    print("healthy scores:", healthy["last"]["scores"])
    assert healthy["active"] == {} and healthy["last"]["reference"] == ["day"], healthy
    assert gw.client.get("/api/v1/events", params={"type": "diagnosis"}).json() == []

    t_cover = time.time()
    sim.picture(cam["id"], "cover")
    arrived, _, ident, raised = sse.next(15.0, camera="cam-01", type="diagnosis")
    print(f"occlusion raised {arrived - t_cover:.1f} s after covering: {raised['data']}")
    assert raised["data"]["kind"] == "occlusion" and raised["data"]["state"] == "active"
    assert raised["end"] is None and raised["score"] >= 1.0
    assert raised["data"]["reason"].startswith("遮挡") and raised["data"]["reason_en"]
    assert arrived - t_cover <= 15.0
    listed = gw.client.get("/api/v1/events", params={"type": "diagnosis"}).json()
    assert [e["id"] for e in listed] == [ident]
    jpeg = gw.client.get(raised["snapshot_url"])
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    assert 'diagnosis_state{camera="cam-01",kind="occlusion"} 1' in gw.client.get("/metrics").text

    t_clear = time.time()
    sim.picture(cam["id"], "normal")
    arrived, _, _, cleared = sse.next(15.0, id=ident)
    print(f"occlusion cleared {arrived - t_clear:.1f} s after uncovering")
    assert cleared["end"] is not None and cleared["data"]["state"] == "cleared"
    assert _status(gw)["active"] == {}

    sim.picture(cam["id"], "freeze")
    _, _, _, frozen = sse.next(20.0, camera="cam-01", type="diagnosis")
    assert (frozen["data"]["kind"], frozen["data"]["state"]) == ("frozen", "active"), frozen
    sim.picture(cam["id"], "normal")
    _, _, _, thawed = sse.next(20.0, id=frozen["id"])
    assert thawed["data"]["state"] == "cleared"
    reset = gw.client.post("/api/v1/diagnosis/cam-01/reference")
    assert reset.status_code == 200, reset.text
    assert gw.client.post("/api/v1/diagnosis/nope/reference").status_code == 404
    sse.stop()
