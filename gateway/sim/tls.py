"""A simulated camera's self-signed TLS certificate (``gateway sim --https``).

Made anew on every start (as a camera that is reset or replaced would), with
:mod:`gateway.tlscert`, so a restart shows a different fingerprint.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from gateway.tlscert import ensure_self_signed, fingerprint


def self_signed(address: str) -> tuple[ssl.SSLContext, str]:
    """A server context with a new self-signed certificate for ``address``, and its SHA-256."""
    with tempfile.TemporaryDirectory(prefix="sim-tls-") as folder:
        cert, key = ensure_self_signed(Path(folder), f"sim-camera {address}", [address])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context, fingerprint(cert)
