"""One ONVIF probe of a registry camera: device information, profiles, stream URIs.

The outcome is the camera's new status and, when it answered, what it told us; the
registry applies both.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cameras import onvif
from gateway.cameras.model import Camera
from gateway.cameras.tls import policy_of


@dataclass(frozen=True)
class ProbeOutcome:
    """``status`` is online, unauthorised, offline or error; ``reason`` says why."""

    status: str
    reason: str = ""
    result: onvif.ProbeResult | None = None
    # The HTTPS certificate seen on first use, to pin from now on (trust on first use).
    learned_fingerprint: str | None = None

    @property
    def failed(self) -> bool:
        """Whether recovery should probe the camera again (not for refused credentials)."""
        return self.status in ("offline", "error")


async def probe_camera(
    cam: Camera, user: str | None, password: str | None, timeout: float
) -> ProbeOutcome:
    """Probe an ONVIF camera (``cam.onvif`` set) with a client of its own."""
    assert cam.onvif is not None
    https, tls = policy_of(cam.onvif)
    client = onvif.OnvifClient(
        cam.onvif["host"],
        cam.onvif["port"],
        user,
        password,
        timeout=timeout,
        label=cam.id,
        https=https,
        tls=tls,
    )
    try:
        async with client:
            result = await client.probe()
    except onvif.AuthError:
        return ProbeOutcome("unauthorised", f"authentication failed for {cam.id}")
    except onvif.UnreachableError as err:
        return ProbeOutcome("offline", str(err))
    except onvif.OnvifError as err:
        return ProbeOutcome("error", str(err))
    return ProbeOutcome("online", result=result, learned_fingerprint=tls.learned)
