"""MQTT notifier (part ``mqtt``): events out to an external broker, Frigate-style topics.

Topics under ``<prefix>/<gateway id>/``:
- ``available``: ``online`` / ``offline`` (retained; the broker's last will says offline)
- ``events``: every event, the one JSON shape
- ``<camera>/<type>``: the same event JSON, per camera and type
- ``<camera>/motion/state``: ``ON`` / ``OFF`` (retained), for home-automation style consumers

paho-mqtt queues publishes and runs its own network thread, so the bus listener stays
quick and a slow or absent broker never blocks the gateway; paho reconnects itself.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import paho.mqtt.client as mqtt

from gateway.config import MqttSettings
from gateway.events.bus import EventBus
from gateway.events.model import Event
from gateway.metrics import Sample

log = logging.getLogger(__name__)


def _topic_part(text: str) -> str:
    # MQTT wildcards and empty levels must not appear in a topic name.
    return "".join("_" if c in "+#\0" else c for c in text).strip("/") or "_"


class MqttNotifier:
    """The ``mqtt`` part: every event on the bus out to the broker (see the module docstring)."""

    def __init__(self, settings: MqttSettings, gateway_id: str, bus: EventBus) -> None:
        self.settings = settings
        self.bus = bus
        self.base = f"{_topic_part(settings.topic_prefix)}/{_topic_part(gateway_id)}"
        self.published = 0
        self.connected = False
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gateway-{gateway_id}"
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            self.client.username_pw_set(settings.username, password)
        self.client.will_set(f"{self.base}/available", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 30)
        self.client.max_queued_messages_set(10000)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.settings.host, reason)
            return
        self.connected = True
        log.info("MQTT connected to %s:%s", self.settings.host, self.settings.port)
        client.publish(f"{self.base}/available", "online", qos=1, retain=True)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected = False
        log.warning("MQTT disconnected from %s: %s", self.settings.host, reason)

    async def start(self) -> None:
        self.client.connect_async(self.settings.host or "", self.settings.port, keepalive=30)
        self.client.loop_start()
        self.bus.add_listener(self.on_event)

    async def stop(self) -> None:
        self.bus.remove_listener(self.on_event)
        info = self.client.publish(f"{self.base}/available", "offline", qos=1, retain=True)
        if self.connected:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def on_event(self, event: Event) -> None:
        payload = event.model_dump_json()
        camera = _topic_part(event.camera) if event.camera else "_gateway"
        self.client.publish(f"{self.base}/events", payload, qos=1)
        self.client.publish(f"{self.base}/{camera}/{_topic_part(event.type)}", payload, qos=1)
        if event.type in ("motion", "camera_motion", "tamper", "input"):
            state = "OFF" if event.end else "ON"
            topic = f"{self.base}/{camera}/{event.type}/state"
            self.client.publish(topic, state, qos=1, retain=True)
        self.published += 1

    def publish(self, topic: str, payload: str) -> None:
        """Publish to a topic of the operator's choosing (a plan's notification)."""
        self.client.publish(_topic_part(topic), payload, qos=1)
        self.published += 1

    def metrics(self) -> list[Sample]:
        return [
            Sample("mqtt_connected", int(self.connected), help="MQTT broker connection up"),
            Sample("mqtt_events_total", self.published, help="Events sent to MQTT", type="counter"),
        ]
