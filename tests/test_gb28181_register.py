"""Registration of the GB/T 28181 up-link against SIPp playing the upper platform:
digest checked by SIPp itself (verifyauth), keepalives, unregister, wrong password,
platform restart, TCP."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.gb28181.part import Gb28181Part
from gateway.store.db import Database
from tests.gb28181_support import (
    DEVICE_ID,
    SERVER_ID,
    Sipp,
    free_port,
    settings,
    upstream,
    wait_for,
)

PASSWORD = "s3cret-pw"


def _tree() -> GatewayNode:
    return GatewayNode(id="town", cameras=[CameraNode(id="cam-01", path="cam-01")])


@pytest.fixture
def sipps(tmp_path: Path) -> Iterator[list[Sipp]]:
    started: list[Sipp] = []
    yield started
    for s in started:
        s.stop()


def _platform(tmp_path: Path, sipps: list[Sipp], *args: str, port: int = 0) -> Sipp:
    sipp = Sipp(
        "gb_platform_uas.xml",
        tmp_path,
        "-key",
        "user",
        DEVICE_ID,
        "-key",
        "pass",
        PASSWORD,
        "-trace_msg",
        *args,
        port=port,
    )
    sipps.append(sipp)
    return sipp


def _part(tmp_path: Path, port: int, **over: object) -> Gb28181Part:
    db = Database(tmp_path / "gw.db")
    return Gb28181Part(
        settings(upstream(port, **over)), db=db, tree=_tree, media=None, backoff_s=0.2
    )


async def test_registers_with_digest_checked_by_sipp_keeps_alive_and_unregisters(
    tmp_path: Path, sipps: list[Sipp]
) -> None:
    sipp = _platform(tmp_path, sipps, "-message_file", str(tmp_path / "msgs.log"))
    part = _part(tmp_path, sipp.port)
    await part.start()
    client = part.clients["county"]
    try:
        await wait_for(lambda: client.state == "online", 15, "registration")
        await wait_for(lambda: client.last_keepalive is not None, 15, "a keepalive answered")
        first = client.last_keepalive
        await wait_for(lambda: client.last_keepalive != first, 15, "a later keepalive")
        status = part.describe("county")["status"]
        assert status["state"] == "online" and status["registrations"] == 1
        # SIPp's 200 OK says 2026-12-01 08:00 GMT: the offset is shown, not applied.
        assert status["clock_offset_s"] is not None
    finally:
        await part.stop()
    trace = (tmp_path / "msgs.log").read_text(errors="replace")
    assert "Authorization: Digest" in trace and "qop=auth" in trace
    assert "Expires: 0" in trace  # unregistered on stop
    assert "SIP/2.0 403" not in trace
    assert client.state == "stopped"


async def test_wrong_password_fails_with_a_clear_status_and_never_logs_it(
    tmp_path: Path, sipps: list[Sipp], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sipp = _platform(tmp_path, sipps)
    wrong = "not-the-pw-9731"
    part = _part(tmp_path, sipp.port, password=wrong)
    await part.start()
    client = part.clients["county"]
    try:
        await wait_for(lambda: "403" in client.last_error, 15, "the 403")
        assert client.state in ("offline", "registering")
        assert "password" in client.last_error
        described = part.describe("county")
        assert described["password_set"] is True
        assert wrong not in repr(described) and "password" not in described
    finally:
        await part.stop()
    assert wrong not in caplog.text
    assert client.last_keepalive is None


async def test_platform_restart_is_followed_by_a_new_registration(
    tmp_path: Path, sipps: list[Sipp]
) -> None:
    sipp = _platform(tmp_path, sipps)
    part = _part(tmp_path, sipp.port, keepalive_s=1)
    await part.start()
    client = part.clients["county"]
    try:
        await wait_for(lambda: client.registrations == 1, 15, "registration")
        sipp.stop()
        again = _platform(tmp_path, sipps, port=sipp.port)
        assert again.port == sipp.port
        # 2 misses x Timer F (64 x 0.05 s) + the backoff: about 8 s.
        await wait_for(lambda: client.registrations == 2, 40, "the new registration")
        assert client.state == "online"
    finally:
        await part.stop()


async def test_registers_over_tcp(tmp_path: Path, sipps: list[Sipp]) -> None:
    import socket

    from tests.gb28181_support import free_port

    sipp = _platform(tmp_path, sipps, "-t", "t1", port=free_port(socket.SOCK_STREAM))
    part = _part(tmp_path, sipp.port, transport="tcp")
    await part.start()
    client = part.clients["county"]
    try:
        await wait_for(lambda: client.last_keepalive is not None, 20, "registration over TCP")
        assert client.state == "online"
    finally:
        await part.stop()


async def test_platform_queries_come_back_over_our_tcp_connection(
    tmp_path: Path, sipps: list[Sipp]
) -> None:
    trace = tmp_path / "tcp.msgs"
    sipp = Sipp(
        "gb_platform_tcp_query.xml",
        tmp_path,
        *("-t", "t1", "-key", "device", DEVICE_ID, "-key", "server", SERVER_ID),
        *("-trace_msg", "-message_file", str(trace)),
        port=free_port(socket.SOCK_STREAM),
    )
    sipps.append(sipp)
    part = _part(tmp_path, sipp.port, transport="tcp")
    await part.start()
    client = part.clients["county"]
    try:
        await wait_for(lambda: client.state == "online", 20, "registration over TCP")

        def answered() -> bool:
            text = trace.read_text(errors="replace") if trace.exists() else ""
            return (
                re.search(r"<Response>\s*<CmdType>DeviceInfo</CmdType>\s*<SN>77</SN>", text)
                is not None
            )

        await wait_for(answered, 20, "the DeviceInfo answer over TCP")
    finally:
        await part.stop()
    text = trace.read_text(errors="replace")
    assert "SIP/2.0/TCP" in text and "<Result>OK</Result>" in text
    assert "Expires: 0" in text
