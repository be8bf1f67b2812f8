"""The simulated cameras' WS-Discovery responder: real UDP probes, parsed with lxml."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lxml import etree

from gateway.sim import wsd_responder
from gateway.sim.camera import SimCamera, SimProfile
from tests.support import ROOT

ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSD11 = "http://docs.oasis-open.org/ws-dd/ns/discovery/2009/01"
WSA11 = "http://www.w3.org/2005/08/addressing"
NVT = "http://www.onvif.org/ver10/network/wsdl"


def make_camera(index: int, address: str) -> SimCamera:
    return SimCamera(
        index=index,
        address=address,
        http_port=8000 + index,
        rtsp_port=8554,
        location="村口 Village gate",
        profiles=[SimProfile("profile_main", "MainStream", 640, 360, 25, 50, "H264", 512, "/main")],
    )


def probe(
    message_id: str,
    types: str = "dn:NetworkVideoTransmitter",
    prefix_ns: str = NVT,
    wsd: str = WSD,
    wsa: str = WSA,
    scopes: str = "",
) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{ENV}" xmlns:w="{wsa}" '
        f'xmlns:d="{wsd}" xmlns:dn="{prefix_ns}"><e:Header><w:MessageID>{message_id}</w:MessageID>'
        f"<w:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>"
        f"<w:Action>{wsd}/Probe</w:Action></e:Header><e:Body><d:Probe><d:Types>{types}</d:Types>"
        f"{scopes}</d:Probe></e:Body></e:Envelope>"
    ).encode()


class Prober:
    """A UDP socket on 127.0.0.1 that sends probes and collects what comes back."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)

    async def ask(self, data: bytes, address: str, wait: float = 0.5) -> list[tuple[bytes, str]]:
        self.sock.sendto(data, (address, 3702))
        return await self.collect(wait)

    async def collect(self, wait: float) -> list[tuple[bytes, str]]:
        loop = asyncio.get_running_loop()
        out = []
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), left)
            except TimeoutError:
                break
            out.append((data, addr[0]))
        return out


def parse_match(data: bytes, wsd: str = WSD, wsa: str = WSA) -> dict:
    root = etree.fromstring(data)
    match = root.find(f".//{{{wsd}}}ProbeMatch")
    types_el = match.find(f"{{{wsd}}}Types")
    types = set()
    for qname in types_el.text.split():
        prefix, _, local = qname.partition(":")
        types.add((types_el.nsmap[prefix], local))
    return {
        "action": root.findtext(f".//{{{wsa}}}Action"),
        "relates_to": root.findtext(f".//{{{wsa}}}RelatesTo"),
        "message_id": root.findtext(f".//{{{wsa}}}MessageID"),
        "address": match.findtext(f"{{{wsa}}}EndpointReference/{{{wsa}}}Address"),
        "types": types,
        "scopes": match.findtext(f"{{{wsd}}}Scopes").split(),
        "xaddrs": match.findtext(f"{{{wsd}}}XAddrs"),
        "version": match.findtext(f"{{{wsd}}}MetadataVersion"),
    }


@pytest.fixture
async def responder():
    # Port 3702 is fixed, so pick a random 127.x.y.0/24 that nobody else on the
    # machine (other tests, other sims) is using right now.
    rng = random.Random()
    for _ in range(50):
        base = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        cams = [make_camera(1, f"{base}.1"), make_camera(2, f"{base}.2")]
        try:
            resp = await wsd_responder.start(cams, None)
            break
        except OSError:
            continue
    else:
        pytest.fail("no free loopback address pair for port 3702")
    prober = Prober()
    yield cams, prober
    resp.close()
    prober.sock.close()


async def test_unicast_probe_gets_probe_matches(responder):
    cams, prober = responder
    addr = cams[0].address
    message_id = f"urn:uuid:{uuid.uuid4()}"
    replies = await prober.ask(probe(message_id), addr)
    assert len(replies) == 1
    data, source = replies[0]
    assert source == addr
    m = parse_match(data)
    assert m["action"] == f"{WSD}/ProbeMatches"
    assert m["relates_to"] == message_id and m["message_id"] != message_id
    assert m["address"] == cams[0].endpoint and m["xaddrs"] == cams[0].onvif_url()
    assert (NVT, "NetworkVideoTransmitter") in m["types"]
    assert "onvif://www.onvif.org/Profile/Streaming" in m["scopes"]
    assert "onvif://www.onvif.org/location/%E6%9D%91%E5%8F%A3%20Village%20gate" in m["scopes"]
    assert any(s.startswith("onvif://www.onvif.org/name/") for s in m["scopes"])
    assert m["version"] == "1"
    # The same MessageID again is ignored; the other camera still answers it once.
    assert await prober.ask(probe(message_id), addr) == []
    other = await prober.ask(probe(message_id), cams[1].address)
    assert parse_match(other[0][0])["address"] == cams[1].endpoint


@pytest.mark.parametrize(
    ("types", "prefix_ns", "answered"),
    [
        ("", NVT, True),
        ("dn:Device", "http://www.onvif.org/ver10/device/wsdl", True),  # tds:Device, other prefix
        ("dn:NetworkVideoTransmitter", "http://example.com/not-onvif", False),
        ("dn:Printer", NVT, False),
        ("unknownprefix:Device", NVT, False),
    ],
)
async def test_probe_types_match_by_namespace_not_prefix(responder, types, prefix_ns, answered):
    cams, prober = responder
    addr = cams[0].address
    replies = await prober.ask(probe(f"uuid:{uuid.uuid4()}", types, prefix_ns), addr)
    assert len(replies) == (1 if answered else 0)


async def test_scopes_ws_discovery_11_and_offline(responder):
    cams, prober = responder
    addr = cams[0].address
    scope = "<d:Scopes>onvif://www.onvif.org/Profile</d:Scopes>"
    assert len(await prober.ask(probe(f"uuid:{uuid.uuid4()}", scopes=scope), addr)) == 1
    scope = "<d:Scopes>onvif://www.onvif.org/name/other</d:Scopes>"
    assert await prober.ask(probe(f"uuid:{uuid.uuid4()}", scopes=scope), addr) == []
    replies = await prober.ask(probe(f"uuid:{uuid.uuid4()}", wsd=WSD11, wsa=WSA11), addr)
    assert parse_match(replies[0][0], WSD11, WSA11)["address"] == cams[0].endpoint
    cams[0].set_fault("offline")
    assert await prober.ask(probe(f"uuid:{uuid.uuid4()}"), addr) == []
    cams[0].set_fault("online")
    assert len(await prober.ask(probe(f"uuid:{uuid.uuid4()}"), addr)) == 1


async def test_malformed_probes_are_ignored(responder):
    cams, prober = responder
    addr = cams[0].address
    bad = [
        b"\x00\xffnot xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        probe("")[:-40],  # truncated
        probe(""),  # no MessageID
        b"<a>" * 20000,  # deep nesting, oversize
        probe(f"uuid:{uuid.uuid4()}").replace(b"d:Probe>", b"d:Resolve>"),
    ]
    for data in bad:
        assert await prober.ask(data, addr, wait=0.2) == []
    assert len(await prober.ask(probe(f"uuid:{uuid.uuid4()}"), addr)) == 1


NETNS_SCRIPT = r"""
import asyncio, json, socket, struct, sys, uuid
from lxml import etree
from gateway.sim import wsd_responder
from tests.test_sim_wsd import make_camera, probe, parse_match, WSD, WSA

GROUP = ("239.255.255.250", 3702)

def group_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(GROUP)
    mreq = socket.inet_aton(GROUP[0]) + socket.inet_aton("127.0.0.1")
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.settimeout(0.3)
    return s

def drain(s):
    out = []
    while True:
        try:
            data, addr = s.recvfrom(65536)
        except (socket.timeout, BlockingIOError):
            return out
        out.append((data, addr[0]))

def actions(packets):
    out = []
    for data, _ in packets:
        root = etree.fromstring(data)
        addr = root.findtext(f".//{{{WSA}}}EndpointReference/{{{WSA}}}Address")
        out.append([root.findtext(f".//{{{WSA}}}Action").rsplit("/", 1)[1], addr])
    return out

async def main():
    listener = group_socket()
    cams = [make_camera(1, "127.0.10.1"), make_camera(2, "127.0.10.2")]
    resp = await wsd_responder.start(cams, sys.argv[1])
    await asyncio.sleep(0.2)
    prober = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    prober.bind(("127.0.0.1", 0))
    prober.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    prober.settimeout(0.5)
    message_id = f"urn:uuid:{uuid.uuid4()}"
    prober.sendto(probe(message_id), GROUP)
    await asyncio.sleep(0.5)
    matches = [dict(parse_match(d), source=a, types=None) for d, a in drain(prober)]
    cams[0].set_fault("offline")  # Bye, then Hello when it comes back
    cams[0].set_fault("online")
    resp.close()
    await asyncio.sleep(0.2)
    print(json.dumps({
        "message_id": message_id,
        "endpoints": [c.endpoint for c in cams],
        "announcements": actions(drain(listener)),
        "matches": matches,
    }))

asyncio.run(main())
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


@pytest.mark.netns
@pytest.mark.parametrize("interface", ["127.0.0.1", "lo"])
def test_multicast_probe_hello_and_bye_in_a_network_namespace(tmp_path: Path, interface: str):
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    ns = f"gwsimwsd{os.getpid()}{interface.replace('.', '')}"
    if _run("ip", "netns", "add", ns).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for cmd in (
            ("ip", "-n", ns, "link", "set", "lo", "up"),
            ("ip", "-n", ns, "link", "set", "lo", "multicast", "on"),
            ("ip", "-n", ns, "route", "add", "239.0.0.0/8", "dev", "lo"),
        ):
            assert _run(*cmd).returncode == 0, cmd
        script = tmp_path / "netns_probe.py"
        script.write_text(NETNS_SCRIPT)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, str(script), interface],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        _run("ip", "netns", "delete", ns)
    endpoints = set(result["endpoints"])
    matches = result["matches"]
    assert {m["address"] for m in matches} == endpoints and len(matches) == 2
    assert all(m["relates_to"] == result["message_id"] for m in matches)
    assert {m["source"] for m in matches} == {"127.0.10.1", "127.0.10.2"}
    first, second = result["endpoints"]
    announced = [tuple(a) for a in result["announcements"] if a[0] in ("Hello", "Bye")]
    assert sorted(announced[:2]) == sorted([("Hello", first), ("Hello", second)])
    assert announced[2:4] == [("Bye", first), ("Hello", first)]  # the offline/online fault
    assert sorted(announced[4:]) == sorted([("Bye", first), ("Bye", second)])
