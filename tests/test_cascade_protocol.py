"""The cascade wire protocol, the outbox, the children store and linkage matching."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import pytest

from gateway.cascade import protocol as p
from gateway.config import LinkageRule
from gateway.events.linkage import matches
from gateway.events.model import Event
from gateway.media.access_unit import AccessUnit
from gateway.store import children
from gateway.store.db import Database
from gateway.store.outbox import Outbox
from tests.support import ROOT


def test_media_frames_round_trip_every_field():
    au = AccessUnit(
        data=b"\x00\x00\x00\x01\x65" + bytes(range(200)),
        pts=-5,
        dts=None,
        time_base=Fraction(1, 90000),
        keyframe=True,
        wallclock=1_795_000_000.123456,
        epoch=7,
    )
    frame = p.decode_frame(p.encode_media(42, au))
    assert frame.kind == p.KIND_MEDIA and frame.channel == 42
    assert frame.au == au
    au2 = AccessUnit(b"\x00\x00\x01\x41", 3003, 3000, Fraction(1, 30000), False, 1.5, 0)
    assert p.decode_frame(p.encode_media(1, au2)).au == au2
    data = p.decode_frame(p.encode_data(9, b"jpeg bytes"))
    assert (data.kind, data.channel, data.payload, data.au) == (p.KIND_DATA, 9, b"jpeg bytes", None)


@pytest.mark.parametrize(
    "buf, why",
    [
        (b"M\x00", "shorter than its header"),
        (b"X" + bytes(p.HEADER_SIZE - 1) + b"x", "unknown binary frame kind"),
        (p.encode_data(1, b"x")[:2] + bytes(4) + p.encode_data(1, b"x")[6:], "channel 0"),
    ],
)
def test_bad_binary_frames_are_refused(buf, why):
    with pytest.raises(p.ProtocolError, match=why):
        p.decode_frame(buf)


def test_media_frame_with_zero_time_base_is_refused():
    au = AccessUnit(b"\x00\x00\x01\x65", 0, 0, Fraction(1, 90000), True, 1.0)
    raw = bytearray(p.encode_media(3, au))
    raw[22:30] = bytes(8)  # tb_num, tb_den
    with pytest.raises(p.ProtocolError, match="zero time base"):
        p.decode_frame(bytes(raw))


@pytest.mark.parametrize(
    "text, why",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"type": "format_disk"}', "unknown message type"),
        ('{"type": "hello", "gateway": "Bad Id"}', "invalid hello"),
        ('{"type": "hello", "gateway": "v1", "extra": 1}', "invalid hello"),
        ('{"type": "heartbeat", "v": 99}', "invalid heartbeat"),
        ('{"type": "events", "items": []}', "invalid events"),
        ('{"type": "camera", "camera": {"id": "c", "path": "../etc"}}', "invalid camera"),
    ],
)
def test_child_messages_are_validated_strictly(text, why):
    with pytest.raises(p.ProtocolError, match=why):
        p.parse_child(text)


def test_oversized_messages_are_refused_before_parsing():
    big = json.dumps({"type": "heartbeat", "pad": "x" * (p.MAX_TEXT_BYTES + 1)})
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.parse_child(big)


def test_parent_cannot_send_child_messages():
    with pytest.raises(p.ProtocolError, match="unknown message type"):
        p.parse_parent('{"type": "catalog", "tree": {"id": "x"}}')
    req = p.parse_parent('{"type": "request", "id": "r1", "op": "snapshot", "path": "cam-01"}')
    assert isinstance(req, p.Request) and req.op == "snapshot"
    with pytest.raises(p.ProtocolError):
        p.parse_parent('{"type": "request", "id": "r1", "op": "rm -rf", "path": "cam-01"}')


def test_tree_paths_must_stay_under_the_child():
    ok = p.GatewayNode(
        id="v1",
        path="v1",
        cameras=[p.CameraNode(id="cam-01", path="v1/cam-01")],
        children=[
            p.GatewayNode(id="x", path="v1/x", cameras=[p.CameraNode(id="c", path="v1/x/c")])
        ],
    )
    assert p.check_tree(ok, "v1") == 2
    bad_cam = ok.model_copy(update={"cameras": [p.CameraNode(id="cam-01", path="v2/cam-01")]})
    with pytest.raises(p.ProtocolError, match="outside"):
        p.check_tree(bad_cam, "v1")
    with pytest.raises(p.ProtocolError, match="is not"):
        p.check_tree(ok, "v2")
    with pytest.raises(p.ProtocolError, match="does not end its path"):
        p.check_tree(ok.model_copy(update={"id": "v2"}), "v1")
    assert p.valid_path("v1/cam-01") and not p.valid_path("v1/../cam") and not p.valid_path("")
    deep = p.GatewayNode(id="a", path="a")
    node, path = deep, "a"
    for i in range(p.MAX_TREE_DEPTH + 2):
        path = f"{path}/n{i}"
        child = p.GatewayNode(id=f"n{i}", path=path)
        node.children.append(child)
        node = child
    with pytest.raises(p.ProtocolError, match="deeper"):
        p.check_tree(deep, "a")


def test_outbox_keeps_order_across_reopen_and_forgets_acked(tmp_path):
    db = Database(tmp_path / "g.db")
    box = Outbox(db)
    seqs = [box.append(Event(camera="cam-01", type="t", data={"n": i})) for i in range(10)]
    assert seqs == sorted(seqs)
    epoch = box.epoch
    db.close()
    db = Database(tmp_path / "g.db")
    box = Outbox(db)
    assert box.epoch == epoch
    items = box.read(0, 100)
    assert [e.data["n"] for _, e in items] == list(range(10))
    box.ack(items[4][0])
    assert [e.data["n"] for _, e in box.read(0, 100)] == list(range(5, 10))
    assert box.pending() == 5
    db.close()


def test_outbox_sheds_oldest_beyond_its_bound(tmp_path):
    box = Outbox(Database(tmp_path / "g.db"), max_rows=500)
    for i in range(2000):
        box.append(Event(type="t", data={"n": i}))
    assert box.pending() <= 1000
    assert box.read(0, 1)[0][1].data["n"] >= 1000
    assert box.dropped > 0


def test_children_tokens_are_hashed_verified_and_revocable(tmp_path):
    db = Database(tmp_path / "g.db")
    children.init(db)
    token = children.add(db, "village-1")
    assert children.verify(db, token) == "village-1"
    assert children.verify(db, token + "x") is None
    assert children.verify(db, "gwc_guess") is None
    raw = db.query_one("SELECT token_hash FROM cascade_children")["token_hash"]
    assert token not in raw
    with pytest.raises(children.ChildExists):
        children.add(db, "village-1")
    assert children.revoke(db, "village-1") is True
    assert children.revoke(db, "village-1") is False
    assert children.verify(db, token) is None
    token2 = children.add(db, "village-1")  # re-issued after revocation
    assert children.verify(db, token2) == "village-1" and token2 != token


def test_children_cli_add_list_revoke(tmp_path):
    env = {"GATEWAY_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "children", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = run("add", "village-3", "--json")
    assert out.returncode == 0, out.stderr
    token = json.loads(out.stdout)["token"]
    assert run("add", "village-3").returncode == 1
    assert run("add", "Bad Name").returncode == 2
    listed = json.loads(run("list", "--json").stdout)
    assert [c["name"] for c in listed] == ["village-3"]
    assert token not in run("list").stdout
    assert run("revoke", "village-3").returncode == 0
    assert run("revoke", "village-3").returncode == 1
    db = Database(tmp_path / "gateway.db")
    assert children.verify(db, token) is None


def _rule(camera: str = "*", type: str = "motion", zone: str | None = None) -> LinkageRule:
    return LinkageRule(
        name="r", match={"camera": camera, "type": type, "zone": zone}, cameras=["cam-02"]
    )


def test_linkage_matching_by_path_prefix_type_and_zone():
    ev = Event(camera="village-1/cam-01", type="motion", zones=["gate"])
    assert matches(_rule(), ev)
    assert matches(_rule("village-1/*"), ev)
    assert matches(_rule("village-1/cam-01"), ev)
    assert not matches(_rule("village-2/*"), ev)
    assert not matches(_rule("village-1"), ev)
    assert not matches(_rule("village-1/cam-0*"), ev)  # only whole-subtree wildcards
    assert not matches(_rule(type="camera_offline"), ev)
    assert matches(_rule(type="*"), ev)
    assert matches(_rule(zone="gate"), ev)
    assert not matches(_rule(zone="yard"), ev)
    # A linkage event never triggers a rule, whatever the rule says.
    assert not matches(_rule(type="*"), Event(camera="village-1/cam-01", type="linkage"))
