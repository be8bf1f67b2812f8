"""PTZ, presets and snapshots of registry cameras, over cached ONVIF clients.

A mixin of :class:`gateway.cameras.registry.Registry`: it relies on the
registry's ``_must``, ``credentials``, ``timeout`` and ``_clients``.
"""

from __future__ import annotations

from typing import Any

from gateway.cameras import onvif
from gateway.cameras.model import Camera
from gateway.cameras.probe import client_for
from gateway.cameras.tls import policy_of

PTZ_ACTIONS = ("move", "stop", "goto_preset", "set_preset", "remove_preset")


class OnvifControl:
    """One connected ONVIF client per camera, reused for PTZ; dropped after an error."""

    _clients: dict[str, onvif.OnvifClient]
    timeout: float

    def _must(self, camera_id: str) -> Camera:  # provided by the registry
        raise NotImplementedError

    def credentials(self, camera_id: str) -> tuple[str | None, str | None]:
        raise NotImplementedError

    async def _client(self, cam: Camera) -> onvif.OnvifClient:
        client = self._clients.get(cam.id)
        if client is None:
            user, password = self.credentials(cam.id)
            client, _ = client_for(cam, user, password, self.timeout)
            await client.connect()
            self._clients[cam.id] = client
        return client

    async def _drop_client(self, camera_id: str) -> None:
        client = self._clients.pop(camera_id, None)
        if client is not None:
            await client.close()

    async def ptz(
        self,
        camera_id: str,
        action: str,
        pan: float = 0.0,
        tilt: float = 0.0,
        zoom: float = 0.0,
        preset: str | None = None,
        name: str | None = None,
        **_ignored: Any,
    ) -> dict[str, Any]:
        """Move (velocities -1..1), stop, go to a preset, set one (here, under ``name``;
        ``preset`` overwrites that one) or remove one; raises ValueError on bad input."""
        cam = self._must(camera_id)
        if action not in PTZ_ACTIONS:
            raise ValueError(f"action must be one of {PTZ_ACTIONS}")
        for axis, value in (("pan", pan), ("tilt", tilt), ("zoom", zoom)):
            if not -1.0 <= float(value) <= 1.0:
                raise ValueError(f"{axis} must be between -1 and 1")
        if not cam.ptz or not cam.main_profile:
            raise ValueError(f"camera {camera_id} has no PTZ")
        if action in ("goto_preset", "remove_preset") and not preset:
            raise ValueError(f"preset is required for {action}")
        try:
            client = await self._client(cam)
            if action == "move":
                await client.ptz_move(cam.main_profile, float(pan), float(tilt), float(zoom))
            elif action == "stop":
                await client.ptz_stop(cam.main_profile)
            elif action == "goto_preset":
                await client.ptz_goto(cam.main_profile, str(preset))
            elif action == "remove_preset":
                await client.ptz_remove_preset(cam.main_profile, str(preset))
            else:
                token = await client.ptz_set_preset(cam.main_profile, preset, name)
                return {"ok": True, "camera": camera_id, "action": action, "preset": token}
        except onvif.OnvifError:
            await self._drop_client(camera_id)
            raise
        return {"ok": True, "camera": camera_id, "action": action}

    async def presets(self, camera_id: str) -> list[dict[str, str]]:
        cam = self._must(camera_id)
        if not cam.ptz or not cam.main_profile:
            raise ValueError(f"camera {camera_id} has no PTZ")
        try:
            return await (await self._client(cam)).ptz_presets(cam.main_profile)
        except onvif.OnvifError:
            await self._drop_client(camera_id)
            raise

    async def snapshot(self, camera_id: str) -> bytes | None:
        """A JPEG from the camera's ONVIF snapshot URI, or None when it has none."""
        cam = self._must(camera_id)
        if not cam.snapshot_uri:
            return None
        user, password = self.credentials(camera_id)
        url = onvif.fix_host(cam.snapshot_uri, cam.onvif["host"]) if cam.onvif else cam.snapshot_uri
        tls = policy_of(cam.onvif)[1]
        return await onvif.fetch_snapshot(url, user, password, timeout=self.timeout, tls=tls)
