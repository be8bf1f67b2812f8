"""The base of every settings model, and the errors and patterns they share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent.parent / "config" / "gateway.yaml"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]


class ConfigError(Exception):
    """A configuration problem, with the key path and what to do about it."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
