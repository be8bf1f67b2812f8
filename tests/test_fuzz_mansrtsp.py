"""Fuzzing what a platform sends about recordings: the MANSRTSP control body of an INFO,
the SDP ``t=`` span of a Playback INVITE and the times of a RecordInfo query.

Each parser promises one exception type for hostile input (``MansrtspError`` and
``ValueError``) with a message; anything else fails. What it accepts stays within
the documented bounds (Scale 0.25-8, spans of at most a day). Bounded: a few hundred
examples each.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.gb28181 import mansrtsp
from gateway.gb28181.playback import MAX_SPAN_S, NTP_OFFSET, parse_span
from gateway.gb28181.records import parse_gb_time

FAST = settings(max_examples=300, deadline=None)

WVP = [  # what WVP-GB28181-pro sends (SIPCommander: pause, resume, seek, speed)
    b"PAUSE RTSP/1.0\r\nCSeq: 912345678\r\nPauseTime: now\r\n",
    b"PLAY RTSP/1.0\r\nCSeq: 212345678\r\nRange: npt=now-\r\n",
    b"PLAY RTSP/1.0\r\nCSeq: 312345678\r\nRange: npt=120-\r\n",
    b"PLAY RTSP/1.0\r\nCSeq: 412345678\r\nScale: 2.000000\r\n",
    b"PLAY MANSRTSP/1.0\r\nCSeq: 5\r\nScale: 0.25\r\nRange: npt=1.5-30\r\n",
    b"TEARDOWN MANSRTSP/1.0\r\nCSeq: 6\r\n",
]


def test_what_wvp_sends_is_understood() -> None:
    pause, resume, seek, speed, both, teardown = (mansrtsp.parse(b) for b in WVP)
    assert (pause.method, pause.cseq) == ("PAUSE", 912345678)
    assert (resume.method, resume.seek_s, resume.scale) == ("PLAY", None, None)
    assert seek.seek_s == 120.0 and speed.scale == 2.0
    assert (both.seek_s, both.scale) == (1.5, 0.25)
    assert teardown.method == "TEARDOWN"
    # Lenient about header case and bare LF line ends.
    assert mansrtsp.parse(b"play rtsp/1.0\ncseq: 7\nscale: 8\n").scale == 8.0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"PLAY RTSP/1.0\r\n",  # no CSeq
        b"PLAY RTSP/2.0\r\nCSeq: 1\r\n",
        b"RECORD RTSP/1.0\r\nCSeq: 1\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: -1\r\n",  # backwards
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 16\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: nan\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: clock=20261206T100000Z-\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\nCSeq: 2\r\n",
        b"PLAY RTSP/1.0\r\nCSeq: 1\r\n" + b"X: y\r\n" * 200,
        "PLAY RTSP/1.0\r\nCSeq: 一\r\n".encode(),
    ],
)
def test_bad_control_bodies_are_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(mansrtsp.MansrtspError) as err:
        mansrtsp.parse(body)
    assert str(err.value)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(WVP)))
    for _ in range(draw(st.integers(1, 5))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 10))]
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=12))
    return bytes(data)


lines = st.lists(
    st.sampled_from(["CSeq", "Range", "Scale", "PauseTime", "cseq", "X"]).flatmap(
        lambda name: st.text(max_size=30).map(lambda v: f"{name}: {v}")
    ),
    max_size=5,
)


@FAST
@given(st.one_of(st.binary(max_size=300), mutated(), lines.map(lambda ls: "\r\n".join(
    ["PLAY RTSP/1.0", *ls]).encode("utf-8", "replace"))))  # fmt: skip
def test_control_parser_only_refuses_with_its_error(body: bytes) -> None:
    try:
        control = mansrtsp.parse(body)
    except mansrtsp.MansrtspError as err:
        assert str(err)
        return
    assert control.method in mansrtsp.METHODS and 0 <= control.cseq < 10**10
    if control.scale is not None:
        assert math.isfinite(control.scale)
        assert mansrtsp.MIN_SCALE <= control.scale <= mansrtsp.MAX_SCALE
    if control.seek_s is not None:
        assert 0 <= control.seek_s < 10**10


def test_span_in_unix_or_ntp_seconds() -> None:
    unix = (1_796_520_000, 1_796_523_600)
    assert parse_span(f"{unix[0]} {unix[1]}") == unix
    ntp = f"{unix[0] + NTP_OFFSET} {unix[1] + NTP_OFFSET}"
    assert parse_span(ntp) == unix


@FAST
@given(st.one_of(st.text(max_size=40), st.tuples(st.integers(-5, 2**40), st.integers(-5, 2**40))
                 .map(lambda t: f"{t[0]} {t[1]}")))  # fmt: skip
def test_span_parser_only_refuses_with_value_error(t_line: str) -> None:
    try:
        start, end = parse_span(t_line)
    except ValueError as err:
        assert str(err)
        return
    assert 0 < start < end and end - start <= MAX_SPAN_S


@FAST
@given(
    st.one_of(
        st.text(max_size=40),
        st.datetimes().map(lambda d: d.isoformat()),
        st.sampled_from(["0001-01-01T00:00:00", "9999-12-31T23:59:59", "2026-02-30T00:00:00"]),
    )
)
def test_gb_time_parser_only_refuses_with_value_error(text: str) -> None:
    try:
        value = parse_gb_time(text)
    except ValueError as err:
        assert str(err)
        return
    assert math.isfinite(value)
