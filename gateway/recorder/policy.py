"""A camera's recording policy, as the recorder uses it (from ``RecordingSettings``)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import RecordingSettings


@dataclass(frozen=True)
class Policy:
    """What to record for one camera."""

    mode: str  # continuous | events | both
    stream: str = "main"
    segment_s: float = 60.0
    pre_s: float = 5.0
    post_s: float = 10.0

    @property
    def continuous(self) -> bool:
        return self.mode in ("continuous", "both")


def policy_from(settings: RecordingSettings) -> Policy | None:
    """The policy of a camera's settings; None when recording is off."""
    if settings.mode == "off":
        return None
    return Policy(
        settings.mode, settings.stream, settings.segment_s, settings.pre_s, settings.post_s
    )
