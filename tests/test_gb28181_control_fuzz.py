"""Hostile DeviceControl MESSAGEs and SUBSCRIBEs (random bytes, mutated valid bodies,
valid shapes with hostile values) against a real upstream client's handlers: every one
gets a SIP answer (or None: not a control body) and nothing raises; the camera side
only ever sees well-formed commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cascade.protocol import CameraNode, GatewayNode
from gateway.gb28181 import ptzcmd
from gateway.gb28181.channels import ChannelDirectory
from gateway.gb28181.sip.message import SipMessage
from gateway.gb28181.upstream import UpstreamClient
from gateway.store.db import Database
from tests.gb28181_support import DEVICE_ID, SERVER_ID, upstream

FAST = settings(max_examples=200, deadline=None)


class Recorder:
    """A CameraControl that keeps what reached it and checks its shape."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []
        self.bad: list[tuple[str, dict[str, Any]]] = []

    async def ptz(self, path: str, command: dict[str, Any]) -> dict[str, Any]:
        actions = ("move", "stop", "goto_preset", "set_preset", "remove_preset")
        axes_ok = all(-1.0 <= float(command.get(a, 0.0)) <= 1.0 for a in ("pan", "tilt", "zoom"))
        if path != "cam-01" or command.get("action") not in actions or not axes_ok:
            self.bad.append((path, command))
        self.commands.append(command)
        return {"ok": True}

    async def presets(self, path: str) -> list[dict[str, Any]]:
        return [{"token": "preset_1", "name": "Home"}]


def _tree() -> GatewayNode:
    cam = CameraNode(id="cam-01", path="cam-01", name="镇政府", status="online", ptz=True)
    return GatewayNode(id="town", name="城关镇", status="online", cameras=[cam])


_state: dict[str, Any] = {}


def _client(tmp: Path) -> tuple[UpstreamClient, str, Recorder]:
    if "client" not in _state:
        db = Database(tmp / "fuzz.db")
        directory = ChannelDirectory(db, _tree, "34020000")
        cam_id = next(c.gb_id for c in directory.channels() if c.kind == "camera")
        recorder = Recorder()
        client = UpstreamClient(upstream(9), directory=directory, media=None, cameras=recorder)
        _state.update(client=client, cam=cam_id, recorder=recorder)
    return _state["client"], _state["cam"], _state["recorder"]


def _request(method: str, body: bytes, expires: str | None = None) -> SipMessage:
    msg = SipMessage(method=method, uri=f"sip:{DEVICE_ID}@3402000000")
    msg.add("Via", "SIP/2.0/UDP 127.0.28.1:5060;branch=z9hG4bKfuzz")
    msg.add("From", f"<sip:{SERVER_ID}@3402000000>;tag=f")
    msg.add("To", f"<sip:{DEVICE_ID}@3402000000>")
    msg.add("Call-ID", f"fuzz-{len(body)}-{hash(body) & 0xFFFF}")
    msg.add("CSeq", f"1 {method}")
    if expires is not None:
        msg.add("Expires", expires)
    msg.body = body
    return msg


def _control(device: str, element: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Control><CmdType>DeviceControl</CmdType>'
        f"<SN>5</SN><DeviceID>{device}</DeviceID>{element}</Control>"
    ).encode("gb18030", "replace")


async def _handle(client: UpstreamClient, req: SipMessage) -> SipMessage | None:
    if req.method == "SUBSCRIBE":
        resp: SipMessage | None = await client.subscriptions.handle(req)
    else:
        resp = await client.control.handle(req)
    # Let spawned commands run, so a crash inside them would surface here.
    await asyncio.gather(*client.control._tasks, return_exceptions=False)
    return resp


SEEDS = [
    _control("{cam}", "<PTZCmd>A50F0101FF0000B5</PTZCmd>"),
    _control("{cam}", f"<PTZCmd>{ptzcmd.build(0x82, 0, 1)}</PTZCmd>"),
    _control("{cam}", "<TeleBoot>Boot</TeleBoot>"),
]


@FAST
@given(
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(SEEDS)
        .flatmap(
            lambda seed: st.tuples(st.just(seed), st.integers(0, len(seed)), st.binary(max_size=8))
        )
        .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
        st.tuples(
            st.sampled_from(["{cam}", "", "1" * 20, "x" * 200, "&amp;"]),
            st.text(max_size=40),
        ).map(lambda t: _control(t[0], f"<PTZCmd>{t[1]}</PTZCmd>")),
    )
)
def test_hostile_device_control_gets_an_answer_never_a_crash(
    tmp_path_factory: Any, body: bytes
) -> None:
    client, cam, recorder = _client(tmp_path_factory.getbasetemp())
    body = body.replace(b"{cam}", cam.encode())

    async def run() -> SipMessage | None:
        return await _handle(client, _request("MESSAGE", body))

    client.control._locks.clear()  # each example runs on its own event loop
    resp = asyncio.run(run())
    assert resp is None or resp.status in (200, 400, 404)
    assert recorder.bad == []


@FAST
@given(
    st.one_of(
        st.binary(max_size=200),
        st.sampled_from([b"Catalog", b"Alarm", b"Keepalive"]).map(
            lambda cmd: (
                b"<Query><CmdType>" + cmd + b"</CmdType><SN>9</SN><DeviceID>1</DeviceID></Query>"
            )
        ),
    ),
    st.one_of(st.none(), st.text(max_size=12)),
)
def test_hostile_subscribes_get_an_answer_never_a_crash(
    tmp_path_factory: Any, body: bytes, expires: str | None
) -> None:
    client, _cam, _recorder = _client(tmp_path_factory.getbasetemp())
    header = (
        None
        if expires is None
        else "".join(c for c in expires if c.isprintable() and c not in "\r\n")
    )

    async def run() -> SipMessage | None:
        resp = await _handle(client, _request("SUBSCRIBE", body, header))
        client.subscriptions.subs.clear()
        return resp

    resp = asyncio.run(run())
    assert resp is not None and resp.status in (200, 400, 481, 489, 503)
    if resp.status == 200:
        assert resp.get("Expires").isdigit()


def test_the_seeds_themselves_reach_the_camera_side(tmp_path_factory: Any) -> None:
    client, cam, recorder = _client(tmp_path_factory.getbasetemp())
    before = len(recorder.commands)

    async def run() -> list[int]:
        out = []
        for seed in SEEDS:
            resp = await _handle(client, _request("MESSAGE", seed.replace(b"{cam}", cam.encode())))
            assert resp is not None
            out.append(resp.status)
        return out

    client.control._locks.clear()
    assert asyncio.run(run()) == [200, 200, 200]
    got = recorder.commands[before:]
    assert [c["action"] for c in got] == ["move", "goto_preset"]
    assert got[0]["pan"] == 1.0 and got[1]["preset"] == "preset_1"
