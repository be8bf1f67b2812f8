"""What every part may know of the gateway it belongs to, and nothing more.

A part that needs the settings, the database, the event bus, its data directory or the
gateway's path takes a :class:`Core` in its constructor; a part that needs a neighbour
(the registry, the streams, the recorder …) takes that neighbour, typed, as its own
argument. ``gateway.app.Gateway`` is the one implementation; tests may pass any object
with these attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gateway.config import Settings
from gateway.events.bus import EventBus
from gateway.store.db import Database


class Core(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def path(self) -> str:
        """This gateway's id in the cascade (``city/town-a``)."""
        ...
