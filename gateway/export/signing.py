"""The gateway's export signing key (Ed25519), kept in the data dir with 0600 permissions.

The manifest of every export is signed with it. The public key goes into the ZIP and is
shown by the API, so whoever receives an export can compare its fingerprint with the one
the gateway shows and check that nothing was changed since.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

log = logging.getLogger(__name__)
KEY_FILE = "export-signing-key.pem"


class SigningKey:
    """Load (or create once) the key; sign bytes; describe the public half."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = _load_or_create(path)
        self.public_pem = public_pem(self._key.public_key())
        self.fingerprint = fingerprint(self.public_pem)

    def sign(self, data: bytes) -> str:
        """The Ed25519 signature of ``data``, base64."""
        return base64.b64encode(self._key.sign(data)).decode()

    def describe(self) -> dict[str, str]:
        return {
            "algorithm": "Ed25519",
            "public_key_pem": self.public_pem,
            "fingerprint": self.fingerprint,
        }


def _load_or_create(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # someone loosened it: the key must stay private
            log.warning("export signing key %s was readable by others; set to 0600", path)
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.replace(tmp, path)
    log.info("created the export signing key %s", path)
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(pem: str) -> str:
    """SHA-256 of the raw public key, as hex pairs (what a person compares by eye)."""
    key = serialization.load_pem_public_key(pem.encode())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def check(pem: str, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is a valid Ed25519 signature of ``data`` by ``pem``."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            return False
        key.verify(base64.b64decode(signature_b64, validate=True), data)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
