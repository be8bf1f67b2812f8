"""The WS-Discovery prober against stub responders on real loopback UDP sockets."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time

import pytest

from gateway.cameras import discovery
from tests import wsd_stub
from tests.support import ROOT, Proc
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


# -- against the simulator (real processes) ----------------------------------------

SMALL_SIM = ("--size", "320x180", "--sub-size", "160x90", "--fps", "5")


def run_cli(*args: str, prefix: tuple[str, ...] = (), timeout: float = 60):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )


def test_cli_sweep_finds_every_sim_camera_in_a_27(sim_factory) -> None:
    sim = sim_factory("--cameras", "10", "--base", "127.0.217.1", *SMALL_SIM)
    out = run_cli("discover", "--range", "127.0.217.0/27", "--timeout", "1.5", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert sorted(d["endpoint"] for d in found) == sorted(c["endpoint"] for c in sim.cameras)
    by_address = {d["address"]: d for d in found}
    for cam in sim.cameras:
        dev = by_address[cam["address"]]
        assert dev["xaddrs"][0] == cam["onvif_url"]
        assert dev["name"] == cam["name"]
        assert set(dev) == {"address", "xaddrs", "name", "location", "hardware", "endpoint"}
    assert "probed" in out.stderr, "progress bar on stderr"
    table = run_cli("discover", "--range", "127.0.217.0/28", "--timeout", "1", "--quiet")
    assert table.returncode == 0 and "ADDRESS" in table.stdout
    assert "模拟摄像机 Sim camera 01" in table.stdout


def test_cli_errors_are_messages_not_tracebacks() -> None:
    out = run_cli("discover", "--range", "300.1.2.0/24")
    assert out.returncode == 2 and "not an address or CIDR range" in out.stderr
    assert "Traceback" not in out.stderr
    out = run_cli("discover", "--interface", "nosuchif0")
    assert out.returncode == 2 and "nosuchif0" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("discover", "--timeout", "abc", "--range", "127.0.0.1")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)


@pytest.fixture
def netns():
    """A fresh network namespace with only loopback, multicast routed to it."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"gwdisc{os.getpid()}"
    if _ip("netns", "add", name).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for args in (
            ("link", "set", "lo", "up"),
            ("link", "set", "lo", "multicast", "on"),
            ("route", "add", "239.0.0.0/8", "dev", "lo"),
        ):
            step = _ip("-n", name, *args)
            assert step.returncode == 0, step.stderr
        yield name
    finally:
        _ip("netns", "del", name)


@pytest.mark.netns
def test_multicast_discovery_in_a_network_namespace_finds_every_camera(netns, tmp_path) -> None:
    prefix = ("ip", "netns", "exec", netns)
    sim = Proc(
        [
            *prefix,
            sys.executable,
            "-m",
            "gateway",
            "sim",
            "--cameras",
            "4",
            "--base",
            "127.0.10.1",
            "--multicast-interface",
            "127.0.0.1",
            "--control-port",
            "0",
            *SMALL_SIM,
        ],
        tmp_path / "sim.log",
    )
    try:
        cameras = sim.read_json_line()["cameras"]
        out = run_cli(
            "discover", "--interface", "127.0.0.1", "--json", "--timeout", "2", prefix=prefix
        )
        assert out.returncode == 0, out.stderr
        found = json.loads(out.stdout)
        assert sorted(d["endpoint"] for d in found) == sorted(c["endpoint"] for c in cameras)
        assert {d["address"] for d in found} == {c["address"] for c in cameras}
    finally:
        sim.stop()
