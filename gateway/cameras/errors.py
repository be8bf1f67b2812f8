"""The errors of the ONVIF side: what failed, for which camera."""

from __future__ import annotations


class OnvifError(Exception):
    """An ONVIF request failed; the message names the camera and the operation."""


class AuthError(OnvifError):
    """The camera refused our credentials."""


class UnreachableError(OnvifError):
    """No answer: connection refused, no route, or timed out."""
