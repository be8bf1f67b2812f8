"""The 8-byte PTZCmd of GB/T 28181 (A.3): directions, speeds, presets and the checksum, with
the bytes WVP-GB28181-pro sends; hostile commands refused with PtzCmdError only (fuzzed);
GB preset numbers resolved to ONVIF tokens; catalog change events from two trees; alarm
subscription filters (priority span, AlarmMethod), fuzzed too."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.gb28181 import manscdp, ptzcmd
from gateway.gb28181.alarms import CODES
from gateway.gb28181.changes import diff
from gateway.gb28181.channels import Channel
from gateway.gb28181.control import find_preset
from gateway.gb28181.subscriptions import Subscription, alarm_filter

FAST = settings(max_examples=400, deadline=None)


def test_wvp_style_commands_decode_to_velocities() -> None:
    # WVP: "A50F01" + cmd + pan speed + tilt speed + zoom<<4, then the sum of bytes mod 256.
    right = ptzcmd.parse("A50F0101FF0000B5")
    assert (right.kind, right.pan, right.tilt, right.zoom) == ("move", 1.0, 0.0, 0.0)
    up_left = ptzcmd.parse(ptzcmd.build(0x0A, 0x80, 0x40))
    assert up_left.pan == pytest.approx(-128 / 255, abs=1e-3)
    assert up_left.tilt == pytest.approx(64 / 255, abs=1e-3)
    down = ptzcmd.parse(ptzcmd.build(0x04, 0, 0xFF))
    assert (down.pan, down.tilt) == (0.0, -1.0)
    zoom_in = ptzcmd.parse(ptzcmd.build(0x10, zoom=0x0F))
    assert zoom_in.zoom == 1.0 and zoom_in.as_onvif()["action"] == "move"
    zoom_out = ptzcmd.parse(ptzcmd.build(0x20, zoom=5))
    assert zoom_out.zoom == pytest.approx(-5 / 15, abs=1e-3)
    stop = ptzcmd.parse("A50F0100000000B5")
    assert stop.kind == "stop" and stop.as_onvif() == {"action": "stop"}
    # A direction bit with speed 0 still moves (platforms that leave speeds empty).
    assert ptzcmd.parse(ptzcmd.build(0x01)).pan == ptzcmd.DEFAULT_SPEED


def test_presets_and_the_address_are_read() -> None:
    for code, kind in ((0x81, "preset_set"), (0x82, "preset_goto"), (0x83, "preset_delete")):
        cmd = ptzcmd.parse(ptzcmd.build(code, 0, 7, address=0x123))
        assert (cmd.kind, cmd.preset, cmd.address) == (kind, 7, 0x123)
    assert ptzcmd.parse(ptzcmd.build(0x48)).kind == "focus_iris"
    assert ptzcmd.parse(ptzcmd.build(0x84, 1, 2)).kind == "other"  # cruise: not supported


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("A50F0101FF0000B6", "checksum"),
        ("A50E0101FF0000B4", "check nibble"),
        ("B50F0101FF0000C5", "start with A5"),
        ("A50F0101FF00", "16 hex digits"),
        ("A50F0101FF0000B5FF", "16 hex digits"),
        ("Z50F0101FF0000B5", "16 hex digits"),
        ("", "16 hex digits"),
        (ptzcmd.build(0x03, 10), "left and right"),
        (ptzcmd.build(0x0C, 0, 10), "up and down"),
        (ptzcmd.build(0x30, zoom=3), "zoom in and zoom out"),
        (ptzcmd.build(0x82, 0, 0), "preset number"),
    ],
)
def test_bad_commands_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ptzcmd.PtzCmdError, match=why):
        ptzcmd.parse(text)


@FAST
@given(st.binary(min_size=7, max_size=7))
def test_every_well_formed_command_parses_and_round_trips(head: bytes) -> None:
    b = bytes([0xA5, 0x0F, *head[2:]])
    text = (b + bytes([ptzcmd.checksum(b)])).hex()
    try:
        cmd = ptzcmd.parse(text)
    except ptzcmd.PtzCmdError as err:
        assert str(err)
        return
    assert -1.0 <= cmd.pan <= 1.0 and -1.0 <= cmd.tilt <= 1.0 and -1.0 <= cmd.zoom <= 1.0
    assert cmd.code == b[3] and 0 <= cmd.address < 4096


@FAST
@given(st.text(max_size=40) | st.binary(max_size=12).map(lambda b: b.hex()))
def test_hostile_text_only_raises_ptzcmd_error(text: str) -> None:
    with contextlib.suppress(ptzcmd.PtzCmdError):
        ptzcmd.parse(text)


@FAST
@given(st.binary(min_size=8, max_size=8))
def test_a_corrupted_checksum_is_always_refused(raw: bytes) -> None:
    good = ptzcmd.checksum(raw)
    if raw[7] == good:
        return
    with pytest.raises(ptzcmd.PtzCmdError):
        ptzcmd.parse(raw.hex())


def test_gb_preset_numbers_find_onvif_tokens() -> None:
    presets = [
        {"token": "preset_1", "name": "Home"},
        {"token": "Preset_9", "name": "gb-5"},
        {"token": "7", "name": "gate"},
    ]
    assert find_preset(presets, 5, nth=True) == "Preset_9"  # one we set for the platform
    assert find_preset(presets, 7, nth=False) == "7"  # a camera whose tokens are numbers
    assert find_preset(presets, 1, nth=True) == "preset_1"  # go-to falls back to the n-th
    assert find_preset(presets, 1, nth=False) is None  # set/delete never guess
    assert find_preset(presets, 4, nth=True) is None


def _cam(gb_id: str, **kw: object) -> Channel:
    base: dict[str, object] = {"name": "cam", "kind": "camera", "parent_id": "p", "online": True}
    base.update(kw)
    return Channel(gb_id, **base)  # type: ignore[arg-type]


def test_catalog_changes_become_on_off_vlost_add_del_update() -> None:
    old = {
        "a": _cam("a"),
        "b": _cam("b"),
        "c": _cam("c", online=False),
        "d": _cam("d"),
        "e": _cam("e"),
    }
    new = {
        "a": _cam("a", online=False, status="offline"),
        "b": _cam("b", name="renamed"),
        "c": _cam("c", online=True, status="online"),
        "e": _cam("e", status="error"),
        "f": _cam("f"),
    }
    got = {(ch.gb_id, ev) for ch, ev in diff(old, new)}
    assert got == {
        ("a", "OFF"),
        ("b", "UPDATE"),
        ("c", "ON"),
        ("d", "DEL"),
        ("e", "VLOST"),
        ("f", "ADD"),
    }
    assert diff(new, new) == []


def _alarm_query(extra: str) -> manscdp.Query:
    body = f"<Query><CmdType>Alarm</CmdType><SN>1</SN><DeviceID>1</DeviceID>{extra}</Query>"
    return manscdp.parse(body.encode(), "gb2312")


def test_alarm_subscription_filters_by_priority_and_method() -> None:
    wanted = _alarm_query(
        "<StartAlarmPriority>1</StartAlarmPriority><EndAlarmPriority>2</EndAlarmPriority>"
        "<AlarmMethod>5</AlarmMethod>"
    )
    assert alarm_filter(wanted) == ((1, 2), frozenset({5}))
    assert alarm_filter(_alarm_query("<AlarmMethod>0</AlarmMethod>")) == ((1, 4), frozenset())
    assert alarm_filter(_alarm_query("<AlarmMethod>1/5</AlarmMethod>"))[1] == {1, 5}
    assert alarm_filter(_alarm_query("<StartAlarmPriority>9</StartAlarmPriority>"))[0] == (1, 4)
    sub = Subscription("Alarm", "c", "l", "r", "t", "Alarm", "1", 0.0)
    sub.priorities, sub.methods = alarm_filter(wanted)
    tamper, motion, linkage = CODES["tamper"], CODES["motion"], CODES["linkage"]
    assert sub.wants(tamper.priority, tamper.method)  # 2, video alarm
    assert not sub.wants(motion.priority, motion.method)  # priority 3
    assert not sub.wants(linkage.priority, linkage.method)  # method 7


@FAST
@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=20))
def test_alarm_filters_never_fail_on_hostile_values(low: str, high: str, method: str) -> None:
    esc = {ord("<"): "", ord("&"): "", ord(">"): ""}
    extra = (
        f"<StartAlarmPriority>{low.translate(esc)}</StartAlarmPriority>"
        f"<EndAlarmPriority>{high.translate(esc)}</EndAlarmPriority>"
        f"<AlarmMethod>{method.translate(esc)}</AlarmMethod>"
    )
    try:
        query = _alarm_query(extra)
    except manscdp.ManscdpError:
        return
    (lo, hi), methods = alarm_filter(query)
    assert 1 <= lo <= hi <= 4 and all(1 <= m <= 9 for m in methods)
