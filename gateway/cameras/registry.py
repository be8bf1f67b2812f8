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
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.cameras import onvif
from gateway.cameras.control import OnvifControl
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
from gateway.cameras.secrets import SecretStore
from gateway.cameras.tls import policy_of
from gateway.config import CameraConfig
from gateway.events.model import Event
from gateway.store import cameras as store

log = logging.getLogger(__name__)

Listener = Callable[[Camera], None]


class DuplicateCamera(ValueError):
    """The camera (same endpoint, host:port, RTSP URL or id) is already registered."""


class CameraNotFound(KeyError):
    """No camera with that id."""

    def __str__(self) -> str:
        return f"unknown camera {self.args[0]!r}"


class CameraConflict(ValueError):
    """The change is not allowed for this camera (e.g. deleting a config camera)."""


class Registry(OnvifControl):
    """Cameras of this gateway; see the module docstring."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.settings = gw.settings
        self.db = gw.db
        self.bus = gw.bus
        self.secrets = SecretStore(gw.data_dir / "secrets.json")
        self.defaults = (gw.settings.motion, gw.settings.recording)
        self.timeout = 5.0
        self._lock = threading.RLock()
        self._add_lock = asyncio.Lock()
        self._cams: dict[str, Camera] = {}
        self._listeners: list[Listener] = []
        self._clients: dict[str, onvif.OnvifClient] = {}
        self._tasks: set[asyncio.Task] = set()
        self._saved_at: dict[str, float] = {}
        # Status writes come from the ingest on the event loop: one ordered writer thread
        # takes them (and the events they publish) off the loop.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-db")
        self._probe_failed: set[str] = set()
        store.init(self.db)
        for record in store.load_all(self.db):
            try:
                cam = Camera.from_record(record)
            except (TypeError, ValueError) as err:
                log.warning("skipping a stored camera record that no longer loads: %s", err)
                continue
            cam.defaults = self.defaults
            self._cams[cam.id] = cam
        for cfg in self.settings.cameras:
            self._apply_config(cfg)

    # -- lifecycle ---------------------------------------------------------

    # ONVIF cameras that were unreachable or failed are probed again this often.
    recover_interval_s = 60.0

    async def start(self) -> None:
        """Read every ONVIF camera's profiles again, in the background."""
        cams = [c for c in self.list() if c.onvif and c.enabled]
        if cams:
            self._spawn(self._refresh_all([c.id for c in cams]))
        self._spawn(self._recover())

    async def _recover(self) -> None:
        """Probe offline/error ONVIF cameras again until they answer.

        Only recovery: a camera is marked offline by whoever saw it fail (the
        ingest, a probe); an unauthorised one waits for new credentials.
        """
        while True:
            await asyncio.sleep(self.recover_interval_s)
            # Only cameras our own probe found failing: a camera the ingest marked
            # offline stays the ingest's business (no flapping between the two).
            ids = [
                c.id
                for c in self.list()
                if c.id in self._probe_failed and c.enabled and c.status in ("offline", "error")
            ]
            if ids:
                await self._refresh_all(ids)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for client in list(self._clients.values()):
            await client.close()
        self._clients.clear()
        await asyncio.to_thread(self._writer.shutdown, True)  # pending status writes land

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refresh_all(self, ids: list[str]) -> None:
        sem = asyncio.Semaphore(8)

        async def one(camera_id: str) -> None:
            async with sem:
                with contextlib.suppress(CameraNotFound):
                    await self.refresh(camera_id)

        await asyncio.gather(*(one(i) for i in ids))

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
        cam = self._must(camera_id)
        secret = self.secrets.get(camera_id)
        user = secret.get("username") or (cam.onvif or {}).get("username")
        return user, secret.get("password")

    def stream_url(self, camera_id: str, profile: str = "main") -> str | None:
        """The RTSP URL with credentials inserted (URL-encoded). Never log it.

        ``profile`` is "main" or "sub"; a camera without a sub stream gives its main.
        """
        cam = self.get(camera_id)
        if cam is None:
            return None
        user, password = self.credentials(camera_id)
        if cam.onvif:
            chosen = cam.profile(profile) or cam.profile("main")
            uri = (chosen or {}).get("stream_uri")
            if not uri:
                return None
            uri = onvif.fix_host(uri, cam.onvif["host"])
        else:
            uri = (cam.sub_rtsp_url if profile == "sub" else None) or cam.rtsp_url
            if not uri:
                return None
        return onvif.with_credentials(uri, user, password)

    # -- listeners and status ----------------------------------------------

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(camera)`` after any change (in the changer's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def _changed(self, cam: Camera, save: bool = True) -> None:
        if save:
            store.upsert(self.db, cam.record())
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
            now = time.monotonic()
            if now - self._saved_at.get(camera_id, 0.0) > 60:
                self._saved_at[camera_id] = now
                self._off_loop(store.upsert, self.db, cam.record())
            return
        self._saved_at[camera_id] = time.monotonic()
        self._changed(cam, save=False)
        self._off_loop(store.upsert, self.db, cam.record())
        if status != before and (status == "online" or before == "online"):
            self._publish(cam, "camera_online" if status == "online" else "camera_offline")
        elif status != before and status != "online":
            log.info("camera %s: %s (%s)", camera_id, status, reason)

    def _publish(self, cam: Camera, kind: str) -> None:
        log.info("camera %s: %s %s", cam.id, kind, cam.reason)
        event = Event(
            camera=cam.id,
            type=kind,
            source=self.gw.path,
            data={"status": cam.status, "reason": cam.reason, "name": cam.name},
        )
        self._off_loop(self.bus.publish, event)  # stores the event: not on the loop

    async def flush(self) -> None:
        """Wait until the status writes (and their events) queued so far are done."""
        with contextlib.suppress(RuntimeError):  # shut down: nothing is queued
            await asyncio.wrap_future(self._writer.submit(lambda: None))

    def _off_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a database write in order; in the writer thread when called on the loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _logged(fn, *args)  # a worker thread already: write here
            return
        try:
            self._writer.submit(_logged, fn, *args)
        except RuntimeError:  # the writer was shut down (stopping): write here
            _logged(fn, *args)

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
        https, tls = policy_of(cam.onvif)
        client = onvif.OnvifClient(
            cam.onvif["host"],
            cam.onvif["port"],
            user,
            password,
            timeout=self.timeout,
            label=cam.id,
            https=https,
            tls=tls,
        )
        try:
            async with client:
                result = await client.probe()
        except onvif.AuthError:
            self._probe_failed.discard(camera_id)
            self.set_status(camera_id, "unauthorised", f"authentication failed for {camera_id}")
            return self._must(camera_id)
        except onvif.UnreachableError as err:
            self._probe_failed.add(camera_id)
            self.set_status(camera_id, "offline", str(err))
            return self._must(camera_id)
        except onvif.OnvifError as err:
            self._probe_failed.add(camera_id)
            self.set_status(camera_id, "error", str(err))
            return self._must(camera_id)
        with self._lock:
            apply_probe(cam, result)
            if tls.learned and cam.onvif is not None:  # trust on first use: pinned from now on
                cam.onvif = {**cam.onvif, "tls_fingerprint": tls.learned}
                log.info("camera %s: HTTPS certificate pinned, SHA-256 %s", camera_id, tls.learned)
        self._probe_failed.discard(camera_id)
        self.set_status(camera_id, "online", "")
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
        await asyncio.to_thread(store.delete, self.db, camera_id)
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
        store.upsert(self.db, cam.record())


def create(gw: Any) -> Registry:
    """The part factory for ``gateway.app._factories()``."""
    return Registry(gw)


def _logged(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("camera registry: %s failed", getattr(fn, "__name__", fn))
