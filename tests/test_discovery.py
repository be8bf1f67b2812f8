"""The WS-Discovery prober against stub responders on real loopback UDP sockets."""

from __future__ import annotations

import logging
import time

import pytest

from gateway.cameras import discovery
from tests import wsd_stub
from tests.test_wsd_parse import BILLION_LAUGHS, HIK_STYLE, XXE


@pytest.fixture
async def stubs():
    started = []

    async def start(address: str, port: int, reply):
        proto, transport = await wsd_stub.start_stub(address, port, reply)
        started.append(transport)
        return proto

    yield start
    for transport in started:
        transport.close()


async def test_sweep_finds_every_device_once_with_fresh_message_ids(stubs) -> None:
    port = wsd_stub.pick_port()
    responders = []
    for i in range(1, 11):
        addr = f"127.0.77.{i}"
        # Half report 0.0.0.0, as some firmwares do: the sender's address must win.
        host = "0.0.0.0" if i % 2 else addr
        reply = wsd_stub.good_reply(addr, f"urn:uuid:stub-{i}", f"cam%20{i}", host)
        responders.append(await stubs(addr, port, reply))
    progress: list[tuple[int, int, int]] = []
    result = await discovery.discover(
        ["127.0.77.0/27"], port=port, timeout=0.5, progress=lambda *a: progress.append(a)
    )
    found = {d.endpoint: d for d in result.devices}
    assert sorted(found) == sorted(f"urn:uuid:stub-{i}" for i in range(1, 11))
    for i in range(1, 11):
        dev = found[f"urn:uuid:stub-{i}"]
        assert dev.address == f"127.0.77.{i}"
        assert dev.xaddrs == [f"http://127.0.77.{i}:80/onvif/device_service"]
        assert dev.name == f"cam {i}"
        # Answers to both probe types were merged into one device.
        assert set(dev.types) == {"dn:NetworkVideoTransmitter", "tds:Device"}
    ids = [mid for r in responders for mid, _ in r.probes]
    assert len(ids) == len(set(ids)) == 20, "one fresh MessageID per Probe"
    for r in responders:
        assert sorted(t for _, t in r.probes) == ["dn:NetworkVideoTransmitter", "tds:Device"]
    assert progress[-1][:2] == (30, 30) and progress[-1][2] == 10
    assert result.probed == 30 and result.rejected == 0


async def test_hostile_replies_are_rejected_logged_and_the_scan_goes_on(
    stubs, caplog, monkeypatch
) -> None:
    # A UDP datagram cannot exceed ~64 KiB, so lower the bound to prove the path.
    monkeypatch.setattr(discovery.wsd, "MAX_MESSAGE_BYTES", 32 * 1024)
    port = wsd_stub.pick_port()
    payloads = {
        "127.0.78.1": [BILLION_LAUGHS.encode()],
        "127.0.78.2": [XXE.encode()],
        "127.0.78.3": [HIK_STYLE.encode()[:300]],
        "127.0.78.4": [HIK_STYLE.encode() + b" " * 40000],
        "127.0.78.5": [b"\xff\xfe garbage"],
    }
    for addr, datagrams in payloads.items():
        await stubs(addr, port, lambda _m, _t, d=datagrams: d)
    good = wsd_stub.good_reply("127.0.78.6", "urn:uuid:good")
    # The good device also sends garbage before its real answer.
    await stubs("127.0.78.6", port, lambda m, t: [b"<not-closed", *good(m, t)])
    with caplog.at_level(logging.WARNING, logger="gateway.cameras.discovery"):
        result = await discovery.discover(["127.0.78.0/29"], port=port, timeout=0.5)
    assert [d.endpoint for d in result.devices] == ["urn:uuid:good"]
    assert result.rejected >= 2 * 5  # every hostile datagram, for both probes
    text = caplog.text
    for reason in ("forbidden XML construct", "malformed XML", "oversize message"):
        assert reason in text
    assert "127.0.78.1" in text


async def test_rate_limit_spaces_probes() -> None:
    port = wsd_stub.pick_port()
    started = time.monotonic()
    # 10 silent addresses, 2 probes each, at 40 probes/s: at least ~0.45 s of sending.
    result = await discovery.discover(
        ["127.0.79.0/28"], port=port, timeout=0.05, rate_per_s=40, concurrency=64
    )
    elapsed = time.monotonic() - started
    assert result.probed == 14 and result.devices == []
    assert elapsed >= 0.6


async def test_concurrency_bound_limits_probes_in_flight() -> None:
    port = wsd_stub.pick_port()
    started = time.monotonic()
    # 6 silent addresses, 2 at a time, each waits its 0.3 s timeout: three rounds.
    await discovery.discover(
        ["127.0.79.1", "127.0.79.2", "127.0.79.3", "127.0.79.4", "127.0.79.5", "127.0.79.6"],
        port=port,
        timeout=0.3,
        concurrency=2,
    )
    assert time.monotonic() - started >= 0.85


def test_expand_targets_accepts_cidrs_and_addresses_and_names_bad_ones() -> None:
    assert discovery.expand_targets(["127.0.0.0/30", "10.0.0.7", "127.0.0.1"]) == [
        "127.0.0.1",
        "127.0.0.2",
        "10.0.0.7",
    ]
    assert len(discovery.expand_targets(["192.168.1.0/24"])) == 254
    with pytest.raises(discovery.DiscoveryError, match="not an address"):
        discovery.expand_targets(["192.168.1.0/33"])
    with pytest.raises(discovery.DiscoveryError, match="too large"):
        discovery.expand_targets(["10.0.0.0/8"])


def test_interface_names_and_addresses_resolve() -> None:
    assert discovery.interface_address("lo") == "127.0.0.1"
    assert discovery.interface_address("127.0.0.1") == "127.0.0.1"
    with pytest.raises(discovery.DiscoveryError, match="nosuchif0"):
        discovery.interface_address("nosuchif0")
