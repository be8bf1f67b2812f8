"""The ``tours`` part (轮巡): named, ordered lists of cameras and tree nodes the wall cycles.

A tour is kept here and run by the operator's page (the wall pages through the
cameras, ``layout`` at a time, ``dwell_s`` per page), so it follows the operator
from one workstation to the next and resumes after a reload. Shared tours (admin)
are everyone's; personal ones belong to their owner.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from gateway.store import tours as store
from gateway.store.db import Database


class TourIn(BaseModel):
    """A tour as an operator writes it."""

    name: str = Field(min_length=1, max_length=64, title="Name / 轮巡名称")
    items: list[str] = Field(
        max_length=256,
        title="Cameras and tree nodes, in order",
        description="Camera paths, or node paths (a village) standing for every camera below",
    )
    layout: Literal[1, 4, 9, 16] = Field(4, title="Split layout")
    dwell_s: float = Field(15, ge=3, le=3600, title="Seconds per page")
    shared: bool = Field(False, title="Shared with every operator (admins only)")

    @model_validator(mode="after")
    def _sane(self) -> TourIn:
        self.name = self.name.strip()
        if not self.name:
            raise ValueError("name: must not be blank / 名称不能为空")
        self.items = [i.strip().strip("/") for i in self.items]
        if not self.items:
            raise ValueError("items: a tour needs at least one camera / 轮巡至少需要一台摄像机")
        for item in self.items:
            if not item or len(item) > 640 or ".." in item.split("/"):
                raise ValueError(f"items: not a camera or node path: {item[:80]!r}")
        return self


class Tours:
    """Tours of one gateway (storage only: the page runs them)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        store.init(db)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def visible_to(self, user: str) -> list[dict[str, Any]]:
        return store.visible_to(self.db, user)

    def get(self, tour_id: int) -> dict[str, Any] | None:
        return store.get(self.db, tour_id)

    def add(self, tour: TourIn, user: str) -> dict[str, Any]:
        """Raises ``store.TourExists``."""
        body = tour.model_dump(exclude={"shared"})
        tour_id = store.add(self.db, "" if tour.shared else user, tour.name, body, user)
        found = store.get(self.db, tour_id)
        assert found is not None
        return found

    def update(self, tour_id: int, tour: TourIn, owner: str) -> dict[str, Any]:
        body = tour.model_dump(exclude={"shared"})
        store.update(self.db, tour_id, "" if tour.shared else owner, tour.name, body)
        found = store.get(self.db, tour_id)
        assert found is not None
        return found

    def delete(self, tour_id: int) -> bool:
        return store.delete(self.db, tour_id)
