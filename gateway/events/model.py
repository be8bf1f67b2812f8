"""The event model (defined in :mod:`gateway.store.event`, which persists it; re-exported here)."""

from gateway.store.event import Event, new_event_id, utcnow

__all__ = ["Event", "new_event_id", "utcnow"]
