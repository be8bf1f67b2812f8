"""What an operator places on a map: camera pins and child areas, in image fractions.

Positions are fractions of the image (0..1 from the top-left corner), so a pin stays on
its crossroads whatever size the page shows the map at, and whatever the image's
resolution when it is replaced by a better scan of the same map.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Paths as the cascade writes them: ids joined by "/" (see gateway.cascade.protocol).
PATH = r"^[a-z0-9][a-z0-9_-]{0,62}(/[a-z0-9][a-z0-9_-]{0,62}){0,9}$"
MAX_PINS = 2000
MAX_AREAS = 200


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pin(_Model):
    """A camera on the map (摄像机点位)."""

    camera: str = Field(pattern=PATH, max_length=640, title="Camera path, as this gateway sees it")
    x: float = Field(ge=0, le=1, title="Across the image, 0 = left edge, 1 = right edge")
    y: float = Field(ge=0, le=1, title="Down the image, 0 = top edge, 1 = bottom edge")


class Area(_Model):
    """A child node (a village on the town's map) as a clickable rectangle (区域)."""

    node: str = Field(pattern=PATH, max_length=640, title="Child node path (village-1)")
    x: float = Field(ge=0, le=1, title="Left edge, fraction of the image width")
    y: float = Field(ge=0, le=1, title="Top edge, fraction of the image height")
    w: float = Field(0.12, gt=0, le=1, title="Width, fraction of the image width")
    h: float = Field(0.08, gt=0, le=1, title="Height, fraction of the image height")

    @model_validator(mode="after")
    def _inside(self) -> Area:
        # Clamp rather than refuse: an area dragged against the edge is what was meant.
        self.w = min(self.w, 1 - self.x) or 0.01
        self.h = min(self.h, 1 - self.y) or 0.01
        return self


class Layout(_Model):
    """Everything placed on one map; a PUT replaces it whole."""

    pins: list[Pin] = Field(default_factory=list, max_length=MAX_PINS)
    areas: list[Area] = Field(default_factory=list, max_length=MAX_AREAS)

    @model_validator(mode="after")
    def _unique(self) -> Layout:
        for kind, keys in (
            ("pins", [p.camera for p in self.pins]),
            ("areas", [a.node for a in self.areas]),
        ):
            seen: set[str] = set()
            for key in keys:
                if key in seen:
                    raise ValueError(f"{kind}: {key!r} is placed twice / 重复放置")
                seen.add(key)
        return self


class GeoIn(_Model):
    """A camera's coordinates (WGS-84 as a phone's GPS reads them); null clears them."""

    latitude: float | None = Field(None, ge=-90, le=90, title="Latitude / 纬度")
    longitude: float | None = Field(None, ge=-180, le=180, title="Longitude / 经度")

    @model_validator(mode="after")
    def _both(self) -> GeoIn:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither / 经纬度需同时填写")
        return self
