"""A parent serving HTTPS with its own generated certificate; the child pins it."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys

from tests.cascade_support import wait_for
from tests.support import ROOT


def _served_fingerprint(port: int) -> str:
    der = ssl.get_server_certificate(("127.0.0.1", port))
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(der)).hexdigest()


def test_generated_certificate_is_stable_and_pinned_by_the_child(gateway_factory) -> None:
    parent = gateway_factory(
        {"server": {"tls_self_signed": True}, "cascade": {"level": "town", "id": "town-a"}},
        name="town",
        tls=True,
    )
    pin = parent.client.get("/api/v1/health").json()["tls_fingerprint"]
    assert pin == _served_fingerprint(parent.port)
    key = parent.data_dir / "tls" / "key.pem"
    assert key.stat().st_mode & 0o077 == 0  # the private key is the service user's only

    out = subprocess.run(
        [sys.executable, "-m", "gateway", "children", "add", "village-1", "--json"],
        env={"GATEWAY_DATA_DIR": str(parent.data_dir), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    issued = json.loads(out.stdout)
    assert issued["tls_fingerprint"] == pin  # handed to the child with its token

    def child(pinned: str, name: str):
        return gateway_factory(
            {
                "cascade": {
                    "level": "village",
                    "id": "village-1",
                    "heartbeat_s": 1,
                    "parent": {
                        "url": parent.base_url,
                        "token": issued["token"],
                        "tls_fingerprint": pinned,
                    },
                }
            },
            name=name,
        )

    def joined() -> bool:
        tree = parent.client.get("/api/v1/tree").json()
        return any(c["id"] == "village-1" and c["status"] == "online" for c in tree["children"])

    wrong = child("00" * 32, "impostor-pin")
    try:
        # A wrong pin: the child never completes the upgrade (so never sends its token).
        wait_for(lambda: "pinned fingerprint" in wrong.tail(20000), 15, "the pin refused")
        assert not joined()
    finally:
        wrong.stop()
    good = child(pin, "village")
    wait_for(joined, 20, "the pinned child online at the parent")

    # Restarting the parent keeps the certificate: the pin stays valid.
    parent.stop()
    again = gateway_factory(
        {"server": {"tls_self_signed": True}, "cascade": {"level": "town", "id": "town-a"}},
        name="town",
        tls=True,
    )
    assert again.client.get("/api/v1/health").json()["tls_fingerprint"] == pin
    assert good.popen.poll() is None
