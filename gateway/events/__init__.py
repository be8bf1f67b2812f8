"""The event bus, linkage rules and notifiers (SSE, webhook, MQTT, uplink)."""
