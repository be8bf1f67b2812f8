"""What a plan (预案) is: the shape the API takes and the store keeps."""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, Field, model_validator


class PresetStep(BaseModel):
    """Send one PTZ camera to one of its presets (预置位)."""

    camera: str = Field(min_length=1, max_length=640, pattern=r"^[A-Za-z0-9_.\-/]+$")
    preset: str = Field(min_length=1, max_length=64, description="Preset token")


class PlanNotify(BaseModel):
    mqtt_topic: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[^+#\x00]+$",
        title="MQTT topic (needs mqtt.host)",
    )
    webhook: AnyHttpUrl | None = Field(None, title="Webhook URL (POST, JSON)")


class PlanIn(BaseModel):
    """A plan as an operator writes it."""

    name: str = Field(min_length=1, max_length=64, title="Name / 预案名称")
    description: str = Field("", max_length=500)
    layout: Literal[1, 4, 9, 16] = Field(4, title="Wall layout")
    wall: list[str] = Field(default_factory=list, max_length=16, title="Cameras on the wall")
    presets: list[PresetStep] = Field(default_factory=list, max_length=32, title="PTZ presets")
    record: list[str] = Field(default_factory=list, max_length=32, title="Cameras to record")
    record_s: float = Field(60, gt=0, le=86400, title="Record for (s)")
    message: str = Field("", max_length=500, title="Message shown to operators")
    notify: PlanNotify = Field(default_factory=PlanNotify)

    @model_validator(mode="after")
    def _sane(self) -> PlanIn:
        self.name = self.name.strip()
        if not self.name:
            raise ValueError("name: must not be blank / 预案名称不能为空")
        for cam in [*self.wall, *self.record]:
            if not cam.strip("/") or ".." in cam.split("/"):
                raise ValueError(f"not a camera path: {cam!r}")
        if len(self.wall) > self.layout:
            raise ValueError(f"wall: {len(self.wall)} cameras do not fit a {self.layout}-split")
        acts = (self.wall, self.presets, self.record, self.message.strip())
        if not any(acts) and not (self.notify.mqtt_topic or self.notify.webhook):
            raise ValueError("the plan does nothing: add cameras, presets, recording or a message")
        return self

    def cameras(self) -> list[str]:
        """Every camera the plan names, in order, once each."""
        seen: dict[str, None] = {}
        for cam in [*self.wall, *(p.camera for p in self.presets), *self.record]:
            seen.setdefault(cam.strip("/"), None)
        return list(seen)


PlanSource = Literal["manual", "linkage"]
