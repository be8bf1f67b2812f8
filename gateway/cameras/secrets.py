"""Camera credentials in ``data_dir/secrets.json``, readable by the service user only.

Passwords never go to the database, the API or the logs. The file is rewritten
atomically (temporary file, fsync, rename), created with mode 0600, and its mode
is tightened again on load if someone loosened it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class SecretsError(Exception):
    """The secrets file cannot be read or written; the message says what to do."""


class SecretStore:
    """Per-camera credentials: ``{"cameras": {id: {"username", "password"}}}``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, str]] = self._load()

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
            if mode & 0o077:
                log.warning("secrets file %s had mode %o; setting 0600", self.path, mode)
                os.chmod(self.path, 0o600)
            raw = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError) as err:
            raise SecretsError(
                f"cannot read the secrets file {self.path}: {err}; fix or remove it"
            ) from None
        cams = raw.get("cameras", {}) if isinstance(raw, dict) else {}
        return {
            str(k): {str(a): str(b) for a, b in v.items() if isinstance(b, str)}
            for k, v in cams.items()
            if isinstance(v, dict)
        }

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"cameras": self._data}, f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.replace(tmp, self.path)

    def get(self, camera_id: str) -> dict[str, str]:
        """A copy of the camera's credentials (may be empty)."""
        with self._lock:
            return dict(self._data.get(camera_id, {}))

    def set(self, camera_id: str, **values: str | None) -> None:
        """Set (or, with None, remove) credential fields of a camera."""
        with self._lock:
            entry = dict(self._data.get(camera_id, {}))
            for key, value in values.items():
                if value is None:
                    entry.pop(key, None)
                else:
                    entry[key] = value
            if entry == self._data.get(camera_id, {}):
                return
            if entry:
                self._data[camera_id] = entry
            else:
                self._data.pop(camera_id, None)
            self._save()

    def delete(self, camera_id: str) -> None:
        with self._lock:
            if self._data.pop(camera_id, None) is not None:
                self._save()
