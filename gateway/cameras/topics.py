"""ONVIF event topics → our event types, and the open/close state per camera channel.

A camera often sends one happening in two topics (Hikvision: CellMotionDetector
and MotionAlarm): per (type, channel) an event is open while any of its topics
says active, and ends when all say inactive, so the pair makes one event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.cameras.pullpoint import Notification

# topic (without prefixes; a trailing "/" matches a whole subtree) → (our type, data item names)
TOPIC_MAP: list[tuple[str, str, tuple[str, ...]]] = [
    ("RuleEngine/CellMotionDetector/Motion", "camera_motion", ("IsMotion", "State")),
    ("VideoSource/MotionAlarm", "camera_motion", ("State", "IsMotion")),
    ("RuleEngine/MotionRegionDetector/Motion", "camera_motion", ("State", "IsMotion")),
    ("VideoSource/GlobalSceneChange/", "tamper", ("State", "IsTamper")),
    ("RuleEngine/TamperDetector/Tamper", "tamper", ("IsTamper", "State")),
    ("VideoSource/ImageTooBlurry/", "tamper", ("State",)),
    ("VideoSource/ImageTooDark/", "tamper", ("State",)),
    ("VideoSource/ImageTooBright/", "tamper", ("State",)),
    ("Device/Trigger/DigitalInput", "input", ("LogicalState", "State")),
    ("Device/IO/Port", "input", ("State", "LogicalState")),
    ("Device/IO/DigitalInput", "input", ("LogicalState", "State")),
]
_TRUE = {"true", "1", "active", "on", "yes"}
_FALSE = {"false", "0", "inactive", "off", "no"}
_CHANNEL_KEYS = (
    "InputToken",
    "Index",
    "port",
    "VideoSourceConfigurationToken",
    "VideoSourceToken",
    "Source",
)


@dataclass(frozen=True)
class Signal:
    """What a notification says: ``type`` on ``channel`` is now ``active``."""

    type: str
    channel: str
    active: bool
    topic: str


def classify(note: Notification) -> Signal | None:
    """The signal a notification carries, or None for topics and values we do not map."""
    for topic, kind, names in TOPIC_MAP:
        if topic.endswith("/"):
            if not (note.topic + "/").startswith(topic):
                continue
        elif note.topic != topic:
            continue
        value = next((note.data[n] for n in names if n in note.data), None)
        if value is None:
            return None
        low = value.strip().lower()
        if low not in _TRUE and low not in _FALSE:
            return None
        # Motion and tamper belong to the camera's picture (one channel for single-sensor
        # cameras); inputs are told apart by their token.
        channel = ""
        if kind == "input":
            channel = next((note.source[k] for k in _CHANNEL_KEYS if k in note.source), "")
        return Signal(kind, channel[:64], low in _TRUE, note.topic)
    return None


MAX_CHANNELS = 64  # a camera that invents input tokens must not grow our memory


@dataclass
class ChannelState:
    """Active topics per (type, channel), and the id of the open event."""

    active: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def apply(self, signal: Signal) -> str | None:
        """Feed one signal; returns "start", "end" or None (no change of the whole)."""
        key = (signal.type, signal.channel)
        topics = self.active.get(key)
        if topics is None:
            if not signal.active or len(self.active) >= MAX_CHANNELS:
                return None
            topics = self.active[key] = set()
        was = bool(topics)
        if signal.active:
            if len(topics) < 16:
                topics.add(signal.topic)
        else:
            topics.discard(signal.topic)
        now = bool(topics)
        if not now:
            del self.active[key]
        if now and not was:
            return "start"
        if was and not now:
            return "end"
        return None

    def open_keys(self) -> list[tuple[str, str]]:
        return [k for k, topics in self.active.items() if topics]

    def clear(self) -> None:
        self.active.clear()
