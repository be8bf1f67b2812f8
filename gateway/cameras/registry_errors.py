"""What the camera registry refuses, as exceptions the API turns into 404/409 answers."""

from __future__ import annotations


class DuplicateCamera(ValueError):
    """The camera (same endpoint, host:port, RTSP URL or id) is already registered."""


class CameraNotFound(KeyError):
    """No camera with that id."""

    def __str__(self) -> str:
        return f"unknown camera {self.args[0]!r}"


class CameraConflict(ValueError):
    """The change is not allowed for this camera (e.g. deleting a config camera)."""
