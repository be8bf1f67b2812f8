"""One ONVIF probe of a registry camera: device information, profiles, stream URIs.

The outcome is the camera's new status and, when it answered, what it told us; the
registry applies both.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cameras import onvif
from gateway.cameras.model import Camera
from gateway.cameras.tls import TlsPolicy, policy_of


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


def client_for(
    cam: Camera, user: str | None, password: str | None, timeout: float
) -> tuple[onvif.OnvifClient, TlsPolicy]:
    """An ONVIF client for a camera with an endpoint, and the TLS policy it checks."""
    if not cam.onvif:
        raise ValueError(f"camera {cam.id} has no ONVIF endpoint")
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
    return client, tls


async def probe_camera(
    cam: Camera, user: str | None, password: str | None, timeout: float
) -> ProbeOutcome:
    """Probe an ONVIF camera (``cam.onvif`` set) with a client of its own."""
    client, tls = client_for(cam, user, password, timeout)
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
