"""A camera thread's errors: counted, the last one kept for its status, none fatal."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Faults:
    """The error count and last error of one camera's recording (``status()``)."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self.errors = 0
        self.last_error = ""

    def count(self, err: BaseException | str) -> None:
        """An error the thread recovers from on its own."""
        self.errors += 1
        self.last_error = str(err)

    def safe(self, fn: Callable[[], T]) -> T | None:
        """Run an index/retention call; a database error is logged, never fatal here."""
        try:
            return fn()
        except Exception as err:
            self.count(err)
            log.warning("camera %s: index update failed: %s", self.camera, err)
            return None

    def fail(self, message: str) -> None:
        """An error that stops recording until something changes (logged once)."""
        self.errors += 1
        if message != self.last_error:
            log.error("camera %s: %s", self.camera, message)
        self.last_error = message
