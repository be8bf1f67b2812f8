from __future__ import annotations

import json
import queue
import shutil
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.config import MqttSettings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.events.mqtt import MqttNotifier
from gateway.store.db import Database
from tests.support import free_port

# Debian puts the broker in /usr/sbin, which a non-login PATH may lack.
MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")


@pytest.fixture
def broker(tmp_path: Path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    assert MOSQUITTO, "mosquitto is not installed: run scripts/setup --system"
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            c.connect("127.0.0.1", port)
            c.disconnect()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(5)


def subscriber(port: int, topic: str) -> tuple[mqtt.Client, queue.Queue]:
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, msg: got.put((msg.topic, msg.payload.decode(), msg.retain))
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    time.sleep(0.3)
    return c, got


async def test_events_reach_a_real_broker_on_frigate_style_topics(broker, tmp_path) -> None:
    sub, got = subscriber(broker, "gw/#")
    bus = EventBus(Database(tmp_path / "g.db"))
    notifier = MqttNotifier(
        MqttSettings(host="127.0.0.1", port=broker, topic_prefix="gw"), "town-a", bus
    )
    await notifier.start()
    deadline = time.monotonic() + 10
    while not notifier.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.connected
    ev = bus.publish(Event(camera="village-1/cam-01", type="motion", score=0.4))
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 10
    while len(seen) < 4 and time.monotonic() < deadline:
        try:
            topic, payload, _ = got.get(timeout=0.5)
            seen[topic] = payload
        except queue.Empty:
            pass
    assert seen["gw/town-a/available"] == "online"
    assert json.loads(seen["gw/town-a/events"])["id"] == ev.id
    assert json.loads(seen["gw/town-a/village-1/cam-01/motion"])["score"] == 0.4
    assert seen["gw/town-a/village-1/cam-01/motion/state"] == "ON"
    await notifier.stop()
    deadline = time.monotonic() + 5
    offline = None
    while offline is None and time.monotonic() < deadline:
        try:
            topic, payload, _ = got.get(timeout=0.5)
            if topic == "gw/town-a/available":
                offline = payload
        except queue.Empty:
            pass
    assert offline == "offline"
    sub.loop_stop()


async def test_absent_broker_never_blocks_publishing(tmp_path) -> None:
    bus = EventBus(Database(tmp_path / "g.db"))
    notifier = MqttNotifier(MqttSettings(host="127.0.0.1", port=free_port()), "g", bus)
    await notifier.start()
    t0 = time.monotonic()
    for _ in range(50):
        bus.publish(Event(camera="cam-01", type="motion"))
    assert time.monotonic() - t0 < 2.0
    assert notifier.connected is False
    await notifier.stop()
