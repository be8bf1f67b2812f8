"""The camera registry (``gw.registry``): the inventory, its credentials and status.

Cameras come from the config (static, the config wins for the fields it sets),
from the API (by ONVIF address or plain RTSP URL) and from discovery. Adding an
ONVIF camera reads its device information and profiles; main = the highest
resolution, sub = the lowest. Passwords live in ``data_dir/secrets.json``, never
in the database, an API response or a log line.

Thread-safe: ``set_status`` and the readers may be called from ingest threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from gateway.cameras import onvif
from gateway.cameras.control import OnvifControl
from gateway.cameras.credentials import login, url_with_login
from gateway.cameras.model import (
    STATUSES,
    Camera,
    CameraCreate,
    CameraPatch,
    FieldError,
    apply_config,
    apply_probe,
    now_iso,
    slug,
)
from gateway.cameras.probe import probe_camera
from gateway.cameras.records import CameraRecords
from gateway.cameras.recovery import Recovery
from gateway.cameras.registry_errors import CameraConflict as CameraConflict
from gateway.cameras.registry_errors import CameraNotFound as CameraNotFound
from gateway.cameras.registry_errors import DuplicateCamera as DuplicateCamera
from gateway.cameras.secrets import SecretStore
from gateway.config import CameraConfig
from gateway.core import Core
from gateway.events.model import Event

log = logging.getLogger(__name__)

Listener = Callable[[Camera], None]


class Registry(OnvifControl):
    """Cameras of this gateway; see the module docstring.

    Its concerns live next to it: :mod:`~gateway.cameras.records` (the database and the
    ordered status writes), :mod:`~gateway.cameras.credentials` (logins and stream URLs),
    :mod:`~gateway.cameras.probe` (one ONVIF probe) and :mod:`~gateway.cameras.recovery`
    (probing in the background).
    """

    def __init__(self, core: Core) -> None:
        self._core = core  # read for its path when an event is published
        self.records = CameraRecords(core.db, core.bus)
        self.secrets = SecretStore(core.data_dir / "secrets.json")
        self.recovery = Recovery(self.refresh, self.list)
        self.defaults = (core.settings.motion, core.settings.recording)
        self.timeout = 5.0
        self._lock = threading.RLock()
        self._add_lock = asyncio.Lock()
        self._cams: dict[str, Camera] = {}
        self._listeners: list[Listener] = []
        self._clients: dict[str, onvif.OnvifClient] = {}
        for cam in self.records.load():
            cam.defaults = self.defaults
            self._cams[cam.id] = cam
        for cfg in core.settings.cameras:
            self._apply_config(cfg)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Read every ONVIF camera's profiles again, in the background."""
        self.recovery.start()

    async def stop(self) -> None:
        await self.recovery.stop()
        for client in list(self._clients.values()):
            await client.close()
        self._clients.clear()
        await self.records.close()  # pending status writes land

    async def refresh_all(self, ids: list[str]) -> None:
        """Probe these cameras, a few at a time (discovery, for the cameras it added)."""
        await self.recovery.refresh_all(ids)

    # -- readers -----------------------------------------------------------

    def list(self) -> list[Camera]:
        with self._lock:
            return list(self._cams.values())

    def get(self, camera_id: str) -> Camera | None:
        with self._lock:
            return self._cams.get(camera_id)

    def _must(self, camera_id: str) -> Camera:
        cam = self.get(camera_id)
        if cam is None:
            raise CameraNotFound(camera_id)
        return cam

    def credentials(self, camera_id: str) -> tuple[str | None, str | None]:
        return login(self._must(camera_id), self.secrets.get(camera_id))

    def stream_url(self, camera_id: str, profile: str = "main") -> str | None:
        """The RTSP URL with credentials inserted (URL-encoded). Never log it.

        ``profile`` is "main" or "sub"; a camera without a sub stream gives its main.
        """
        cam = self.get(camera_id)
        if cam is None:
            return None
        user, password = self.credentials(camera_id)
        return url_with_login(cam, profile, user, password)

    # -- listeners and status ----------------------------------------------

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(camera)`` after any change (in the changer's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def _changed(self, cam: Camera, save: bool = True) -> None:
        if save:
            self.records.save(cam)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(cam)
            except Exception:
                log.exception("camera listener %r failed for %s", listener, cam.id)

    def set_status(self, camera_id: str, status: str, reason: str = "") -> None:
        """Record a camera's status; a change publishes camera_online/camera_offline."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        with self._lock:
            cam = self._cams.get(camera_id)
            if cam is None:
                return
            before, before_reason = cam.status, cam.reason
            cam.status, cam.reason = status, reason[:500]
            if status == "online":
                cam.last_seen = now_iso()
        if (status, cam.reason) == (before, before_reason):
            # A repeated report: no listeners, and the database only once a minute.
            self.records.save_status(cam, repeated=True)
            return
        self._changed(cam, save=False)
        self.records.save_status(cam, repeated=False)
        if status != before and (status == "online" or before == "online"):
            self._publish(cam, "camera_online" if status == "online" else "camera_offline")
        elif status != before and status != "online":
            log.info("camera %s: %s (%s)", camera_id, status, reason)

    def _publish(self, cam: Camera, kind: str) -> None:
        log.info("camera %s: %s %s", cam.id, kind, cam.reason)
        event = Event(
            camera=cam.id,
            type=kind,
            source=self._core.path,
            data={"status": cam.status, "reason": cam.reason, "name": cam.name},
        )
        self.records.publish(event)  # stores the event: not on the loop

    async def flush(self) -> None:
        """Wait until the status writes (and their events) queued so far are done."""
        await self.records.flush()

    def mark_seen(self, camera_id: str, seen: bool) -> None:
        """Discovery saw (or missed) this camera in its last sweep."""
        with self._lock:
            cam = self._cams.get(camera_id)
            if cam is None:
                return
            cam.discovery_seen = seen
            if seen:
                cam.last_seen = now_iso()
        self._changed(cam)

    # -- changes -----------------------------------------------------------

    def find_duplicate(
        self,
        *,
        endpoint: str | None = None,
        host: str | None = None,
        port: int | None = None,
        rtsp_url: str | None = None,
        exclude: str | None = None,
    ) -> Camera | None:
        for cam in self.list():
            if cam.id == exclude:
                continue
            if endpoint and cam.endpoint == endpoint:
                return cam
            if host and cam.onvif and (cam.onvif["host"], cam.onvif["port"]) == (host, port):
                return cam
            if rtsp_url and cam.rtsp_url == rtsp_url:
                return cam
        return None

    def next_id(self) -> str:
        """The next free ``cam-NN``."""
        return self._new_id("")

    def _new_id(self, name: str) -> str:
        with self._lock:
            candidate = slug(name)
            if candidate and candidate not in self._cams:
                return candidate
            n = 1
            while f"cam-{n:02d}" in self._cams:
                n += 1
            return f"cam-{n:02d}"

    async def add(self, spec: CameraCreate, *, source: str = "api", probe: bool = True) -> Camera:
        """Register a camera; an ONVIF one is probed (its status tells how that went).

        Raises :class:`DuplicateCamera` when it is already known.
        """
        rtsp, rtsp_user, rtsp_pass = (None, None, None)
        if spec.rtsp_url:
            rtsp, rtsp_user, rtsp_pass = onvif.strip_credentials(spec.rtsp_url)
        sub = onvif.strip_credentials(spec.sub_rtsp_url)[0] if spec.sub_rtsp_url else None
        async with self._add_lock:
            dup = self.find_duplicate(
                endpoint=spec.endpoint,
                host=spec.onvif.host if spec.onvif else None,
                port=spec.onvif.port if spec.onvif else None,
                rtsp_url=rtsp,
            )
            if dup is not None:
                raise DuplicateCamera(f"this camera is already registered as {dup.id}")
            if spec.id and self.get(spec.id) is not None:
                raise DuplicateCamera(f"camera id {spec.id} is taken")
            camera_id = spec.id or self._new_id(spec.name or "")
            cam = Camera(
                id=camera_id,
                name=spec.name or camera_id,
                level=spec.level or "",
                location=spec.location or "",
                division=spec.division or "",
                onvif=(
                    {
                        "host": spec.onvif.host,
                        "port": spec.onvif.port,
                        "username": spec.onvif.username,
                        "https": spec.onvif.https,
                        "tls_fingerprint": spec.onvif.tls_fingerprint,
                        "tls_trust_self_signed": spec.onvif.tls_trust_self_signed,
                    }
                    if spec.onvif
                    else None
                ),
                rtsp_url=rtsp,
                sub_rtsp_url=sub,
                endpoint=spec.endpoint,
                enabled=spec.enabled if spec.enabled is not None else True,
                source=source,
                motion_settings=spec.motion,
                recording_settings=spec.recording,
                reason="not checked yet" if spec.onvif else "not connected yet",
            )
            cam.defaults = self.defaults
            if spec.onvif:
                self.secrets.set(
                    camera_id, username=spec.onvif.username, password=spec.onvif.password
                )
            else:
                self.secrets.set(camera_id, username=rtsp_user, password=rtsp_pass)
            with self._lock:
                self._cams[camera_id] = cam
            self._changed(cam)
        log.info("camera %s added (%s)", camera_id, source)
        if cam.onvif and probe:
            await self.refresh(camera_id)
        return self._must(camera_id)

    async def refresh(self, camera_id: str) -> Camera:
        """Probe an ONVIF camera: device info, profiles, URIs; sets its status."""
        cam = self._must(camera_id)
        if not cam.onvif:
            return cam
        user, password = self.credentials(camera_id)
        await self._drop_client(camera_id)
        outcome = await probe_camera(cam, user, password, self.timeout)
        if outcome.result is not None:
            with self._lock:
                apply_probe(cam, outcome.result)
                pin = outcome.learned_fingerprint
                if pin and cam.onvif is not None:  # trust on first use: pinned from now on
                    cam.onvif = {**cam.onvif, "tls_fingerprint": pin}
                    log.info("camera %s: HTTPS certificate pinned, SHA-256 %s", camera_id, pin)
        self.recovery.probed(camera_id, failed=outcome.failed)
        self.set_status(camera_id, outcome.status, outcome.reason)
        return self._must(camera_id)

    async def update(self, camera_id: str, patch: CameraPatch) -> Camera:
        """Apply the fields sent; a changed endpoint or password probes again."""
        cam = self._must(camera_id)
        sent = patch.model_fields_set
        self._check_patch(cam, patch)
        reprobe = False
        with self._lock:
            for key in ("name", "level", "location", "division", "enabled"):
                if key in sent and getattr(patch, key) is not None:
                    setattr(cam, key, getattr(patch, key))
            if "motion" in sent:
                cam.motion_settings = patch.motion
            if "recording" in sent:
                cam.recording_settings = patch.recording
            for key in ("main_profile", "sub_profile"):
                if key in sent and getattr(patch, key) is not None:
                    setattr(cam, key, getattr(patch, key))
        if patch.onvif is not None and cam.onvif:
            changes = patch.onvif.model_dump(exclude_unset=True)
            cam.onvif = {**cam.onvif, **{k: v for k, v in changes.items() if k != "password"}}
            if "username" in changes:
                self.secrets.set(camera_id, username=changes["username"])
            if "password" in changes:
                self.secrets.set(camera_id, password=changes["password"])
            reprobe = True
        for key in ("rtsp_url", "sub_rtsp_url"):
            if key in sent and getattr(patch, key) is not None:
                url, user, password = onvif.strip_credentials(getattr(patch, key))
                if key == "rtsp_url" and user is not None:
                    self.secrets.set(camera_id, username=user, password=password)
                setattr(cam, key, url)
        self._changed(cam)
        await self._drop_client(camera_id)
        if reprobe:
            await self.refresh(camera_id)
        return self._must(camera_id)

    def _check_patch(self, cam: Camera, patch: CameraPatch) -> None:
        """Every reason to refuse a patch, before anything changes."""
        sent = patch.model_fields_set
        tokens = {p["token"] for p in cam.profiles}
        for key in ("main_profile", "sub_profile"):
            value = getattr(patch, key)
            if key in sent and value is not None and value not in tokens:
                raise FieldError(key, f"the camera has no profile {value!r}")
        if patch.onvif is not None:
            if not cam.onvif:
                raise FieldError("onvif", "this camera was added by RTSP URL, not ONVIF")
            new = {**cam.onvif, **patch.onvif.model_dump(exclude_unset=True)}
            dup = self.find_duplicate(host=new["host"], port=new["port"], exclude=cam.id)
            if dup is not None:
                raise DuplicateCamera(f"{new['host']}:{new['port']} is already {dup.id}")
        for key in ("rtsp_url", "sub_rtsp_url"):
            if key in sent and getattr(patch, key) is not None:
                if cam.onvif:
                    raise FieldError(key, "this camera is an ONVIF camera")
                url = onvif.strip_credentials(getattr(patch, key))[0]
                dup = self.find_duplicate(rtsp_url=url, exclude=cam.id)
                if key == "rtsp_url" and dup is not None:
                    raise DuplicateCamera(f"this RTSP URL is already {dup.id}")

    async def remove(self, camera_id: str) -> None:
        cam = self._must(camera_id)
        if cam.source == "config":
            raise CameraConflict(
                f"camera {camera_id} is defined in the config file; remove it there"
            )
        with self._lock:
            self._cams.pop(camera_id, None)
        await self._drop_client(camera_id)
        await self.records.delete(camera_id)
        self.secrets.delete(camera_id)
        log.info("camera %s removed", camera_id)
        cam.status, cam.reason = "offline", "removed"
        self._changed(cam, save=False)

    def _apply_config(self, cfg: CameraConfig) -> None:
        """A static camera from the config: the config wins for the fields it sets."""
        cam = self._cams.get(cfg.id) or Camera(id=cfg.id, reason="not checked yet")
        cam.defaults = self.defaults
        user, password = apply_config(cam, cfg)
        self.secrets.set(cfg.id, username=user, password=password)
        self._cams[cfg.id] = cam
        self.records.save(cam)
