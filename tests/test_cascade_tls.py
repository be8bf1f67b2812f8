"""The uplink over wss: a pinned parent certificate is trusted, any other one is not."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

from gateway.app import Gateway
from gateway.config import parse_settings


def _cert(tmp: Path) -> tuple[Path, Path, str]:
    key, crt = tmp / "parent.key", tmp / "parent.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=parent",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    der = ssl.PEM_cert_to_DER_cert(crt.read_text())
    return crt, key, hashlib.sha256(der).hexdigest()


class FakeParent:
    """A TLS WebSocket server that welcomes a child and records what it says."""

    def __init__(self) -> None:
        self.auth: list[str] = []
        self.messages: list[dict] = []

    async def handler(self, ws) -> None:
        self.auth.append(ws.request.headers.get("Authorization", ""))
        async for raw in ws:
            msg = json.loads(raw)
            self.messages.append(msg)
            if msg["type"] == "hello":
                await ws.send(json.dumps({"type": "welcome", "parent": "town-a", "last_seq": 0}))


async def _run_child(tmp: Path, port: int, pin: str | None, name: str) -> Gateway:
    parent = {"url": f"https://127.0.0.1:{port}", "token": "gwc_test-token"}
    if pin is not None:
        parent["tls_fingerprint"] = pin
    settings = parse_settings(
        {"data_dir": str(tmp / name), "cascade": {"id": "village-1", "parent": parent}}
    )
    gw = Gateway(settings)
    await gw.cascade.uplink.start()
    return gw


@pytest.mark.parametrize("case", ["pinned", "wrong-pin", "no-pin"])
async def test_uplink_trusts_exactly_the_pinned_certificate(tmp_path: Path, case: str) -> None:
    crt, key, fingerprint = _cert(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    parent = FakeParent()
    async with serve(parent.handler, "127.0.0.1", 0, ssl=ctx) as server:
        port = server.sockets[0].getsockname()[1]
        pin = {"pinned": fingerprint.upper(), "wrong-pin": "00" * 32, "no-pin": None}[case]
        gw = await _run_child(tmp_path, port, pin, case)
        up = gw.cascade.uplink
        try:
            for _ in range(50):
                if up.connected or up.last_error:
                    break
                await asyncio.sleep(0.1)
            if case == "pinned":
                assert up.connected, up.last_error
                await asyncio.sleep(0.3)
                assert parent.auth == ["Bearer gwc_test-token"]
                kinds = [m["type"] for m in parent.messages]
                assert kinds[:2] == ["hello", "catalog"]
                assert parent.messages[0]["gateway"] == "village-1"
            else:
                assert not up.connected
                # Not even the upgrade request (it carries the token) to an untrusted parent.
                assert not parent.auth and not parent.messages
                want = "pinned fingerprint" if case == "wrong-pin" else "CERTIFICATE_VERIFY"
                assert want in up.last_error
                assert "gwc_test-token" not in up.last_error
        finally:
            await up.stop()
            gw.db.close()
