"""End to end: a simulated camera's scripted motion becomes an event in the API and on SSE.

A real ``gateway sim`` and a real ``gateway run`` on loopback. The latency is
measured from just before the sim's control call that switches motion on to the
arrival of the event (SSE: the message; API: the first poll that lists it).
"""

from __future__ import annotations

import contextlib
import json
import queue
import random
import re
import threading
import time
from typing import Any

import cv2
import httpx
import numpy as np

# The sim draws a barcode and a ticker in its top 8 %: mask them, as one masks an OSD clock.
MOTION = {
    "fps": 5,
    "start_after_s": 0.3,
    "end_after_s": 1.5,
    "cooldown_s": 1.0,
    "masks": [[[0, 0], [1, 0], [1, 0.1], [0, 0.1]]],
}


class SseReader(threading.Thread):
    """Reads an SSE stream in a thread; (arrival time, event name, id, data) go to a queue."""

    def __init__(self, url: str, token: str | None) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.messages: queue.Queue[tuple[float, str, str, dict[str, Any]]] = queue.Queue()
        self.comments = 0
        self.connected = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the gateway stops at the end of the test
            self._read()

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        timeout = httpx.Timeout(5.0, read=30.0)
        with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments += 1
                    self.connected.set()
                elif not line:
                    if "data" in fields:
                        data = json.loads(fields["data"])
                        self.messages.put(
                            (time.time(), fields.get("event", ""), fields["id"], data)
                        )
                    fields = {}
                else:
                    key, _, value = line.partition(":")
                    fields[key] = value.removeprefix(" ")

    def next(self, timeout: float, **match: Any) -> tuple[float, str, str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no SSE event matching {match} within {timeout}s")
            msg = self.messages.get(timeout=left)
            if all(msg[3].get(k) == v for k, v in match.items()):
                return msg

    def stop(self) -> None:
        self._stop.set()


def analysed_frames(gw: Any) -> float:
    text = gw.client.get("/metrics").text
    m = re.search(r'motion_frames_analysed_total\{camera="cam-01"[^}]*\} ([0-9.e+]+)', text)
    return float(m.group(1)) if m else 0.0


def test_sim_motion_reaches_api_and_sse_within_one_second(sim_factory, gateway_factory) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    sim = sim_factory(
        "--base", base, "--size", "640x360", "--sub-size", "640x360", "--fps", "25",
        "--gop", "25", "--no-onvif",
    )  # fmt: skip
    cam = sim.cameras[0]
    gw = gateway_factory(
        {
            "cameras": [
                {"id": "cam-01", "rtsp_url": cam["rtsp_main"], "sub_rtsp_url": cam["rtsp_sub"]}
            ],
            "motion": MOTION,
        }
    )
    sse = SseReader(gw.base_url + "/api/v1/events/stream?type=motion", gw.token)
    sse.start()
    assert sse.connected.wait(10), "SSE stream did not open"

    # Let the worker learn the background; nothing may fire on the static picture.
    deadline = time.monotonic() + 30
    while analysed_frames(gw) < 15:
        assert time.monotonic() < deadline, gw.tail()
        time.sleep(0.2)
    time.sleep(1.0)
    assert gw.client.get("/api/v1/events", params={"type": "motion"}).json() == []

    t_on = time.time()
    sim.motion(cam["id"], True)
    arrived, name, ident, started = sse.next(5.0, camera="cam-01", type="motion")
    sse_latency = arrived - t_on
    api_latency = None
    while api_latency is None and time.time() - t_on < 5:
        listed = gw.client.get("/api/v1/events", params={"camera": "cam-01", "type": "motion"})
        if any(e["id"] == ident for e in listed.json()):
            api_latency = time.time() - t_on
        else:
            time.sleep(0.02)
    print(f"motion e2e latency: SSE {sse_latency * 1000:.0f} ms, API {api_latency * 1000:.0f} ms")
    assert name == "motion" and started["id"] == ident and started["end"] is None
    assert sse_latency <= 1.0, sse_latency
    assert api_latency is not None and api_latency <= 1.0, api_latency
    assert started["snapshot_url"] == f"/api/v1/events/{ident}/snapshot.jpg"
    assert started["boxes"] and started["score"] > 0

    # The box lies in the sim's motion band (rows 40-70 % of the picture).
    _, y, _, h = started["boxes"][0]
    assert 0.3 <= y + h / 2 <= 0.8, started["boxes"]

    jpeg = gw.client.get(started["snapshot_url"])
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3)

    time.sleep(1.0)
    sim.motion(cam["id"], False)
    _, _, end_id, ended = sse.next(10.0, id=ident, acknowledged=False)
    while ended["end"] is None:  # updates before the end (none expected, but allowed)
        _, _, end_id, ended = sse.next(10.0, id=ident)
    assert end_id == ident and ended["end"] > ended["start"]
    got = gw.client.get(f"/api/v1/events/{ident}").json()
    assert got["end"] == ended["end"]

    acked = gw.client.post(f"/api/v1/events/{ident}/ack")
    assert acked.status_code == 200 and acked.json()["acknowledged"] is True
    _, _, _, update = sse.next(5.0, id=ident, acknowledged=True)
    assert update["data"]["acknowledged_by"] == "admin"
    sse.stop()


def motion_series(gw: Any) -> list[str]:
    text = gw.client.get("/metrics").text
    return re.findall(r'motion_frames_analysed_total\{camera="cam-01",stream="([^"]+)"\}', text)


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_motion_uses_main_without_sub_stream_and_follows_camera_changes(
    sim_factory, gateway_factory
) -> None:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    sim = sim_factory("--base", base, "--size", "320x180", "--gop", "25", "--no-onvif")
    gw = gateway_factory({"cameras": [{"id": "cam-01", "rtsp_url": sim.cameras[0]["rtsp_main"]}]})
    wait_for(lambda: motion_series(gw) == ["cam-01/main"], 30, "a motion worker on main")

    r = gw.client.patch("/api/v1/cameras/cam-01", json={"motion": {"enabled": False}})
    assert r.status_code == 200, r.text
    wait_for(lambda: motion_series(gw) == [], 10, "the worker to stop")

    r = gw.client.patch(
        "/api/v1/cameras/cam-01", json={"motion": {"enabled": True, "sensitivity": 0.8}}
    )
    assert r.status_code == 200, r.text
    wait_for(lambda: motion_series(gw) == ["cam-01/main"], 10, "the worker to come back")
    bad = {"motion": {"masks": [[[0, 0], [2, 0], [1, 1]]]}}
    assert gw.client.patch("/api/v1/cameras/cam-01", json=bad).status_code == 422
