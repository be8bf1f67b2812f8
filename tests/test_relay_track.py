"""The passthrough track's timeline and the negotiation helpers, without sockets."""

from __future__ import annotations

from fractions import Fraction

import pytest

from gateway.media import h264
from gateway.media.access_unit import AccessUnit
from gateway.relay import whep
from gateway.relay.track import CLOCK_RATE, SQUEEZE_TICKS, RebasingClock

TB = Fraction(1, 1000)  # a camera clock in milliseconds


def au(pts: int, wall: float, epoch: int = 1, key: bool = False) -> AccessUnit:
    return AccessUnit(b"\x00\x00\x01\x65", pts, pts, TB, key, wall, epoch)


def test_pts_follow_the_source_within_an_epoch() -> None:
    clock = RebasingClock()
    out = [clock.rebase(au(1000 + 40 * i, 100 + 0.04 * i)) for i in range(5)]
    assert out == [i * 40 * CLOCK_RATE // 1000 for i in range(5)]


def test_new_epoch_continues_after_the_wall_clock_gap() -> None:
    clock = RebasingClock()
    clock.rebase(au(5000, 100.0))
    last = clock.rebase(au(5040, 100.04))
    # The camera reconnects 3 s later and its clock restarts near zero.
    first_new = clock.rebase(au(0, 103.04, epoch=2, key=True))
    assert first_new - last == pytest.approx(3 * CLOCK_RATE, abs=2)
    assert clock.rebase(au(40, 103.08, epoch=2)) - first_new == 40 * CLOCK_RATE // 1000


def test_backward_or_huge_jumps_do_not_break_monotonicity() -> None:
    clock = RebasingClock()
    a = clock.rebase(au(10_000, 50.0))
    b = clock.rebase(au(9_000, 50.04))  # camera clock went backwards
    c = clock.rebase(au(9_000 + 3_600_000, 50.08))  # and then an hour forwards
    assert a < b < c
    assert c - b < CLOCK_RATE  # the hour is not reproduced; the wall clock is used


def test_squeezed_burst_then_live_spacing() -> None:
    clock = RebasingClock()
    start = clock.rebase(au(0, 10.0, key=True))
    burst = [clock.rebase(au(40 * i, 10 + 0.04 * i), squeeze=True) for i in range(1, 10)]
    assert burst[-1] - start == 9 * SQUEEZE_TICKS  # a GOP backlog plays out at once
    live = clock.rebase(au(400, 10.4))
    assert live - burst[-1] == 40 * CLOCK_RATE // 1000  # then normal frame spacing


def test_profile_level_id_from_sps() -> None:
    sps = b"\x00\x00\x00\x01\x67\x64\x00\x28\xac" + b"\x00\x00\x01\x68\xee"
    assert h264.profile_level_id(sps + b"\x00\x00\x01\x65\x88") == "640028"
    assert h264.profile_level_id(b"\x00\x00\x01\x41\x9a") is None


def test_codec_preferences_put_the_source_profile_first() -> None:
    offered = [whep.OfferCodec(102, "42e01f"), whep.OfferCodec(112, "64001f")]
    prefs = whep.codec_preferences(offered, "640028")
    assert prefs[0].parameters["profile-level-id"].startswith("64")
    assert prefs[-1].mimeType == "video/rtx"
    prefs = whep.codec_preferences(offered, "42c01e")
    assert prefs[0].parameters["profile-level-id"] == "42e01f"


def test_mdns_candidates_are_stripped_and_sdpfrag_parsed() -> None:
    sdp = (
        "v=0\r\na=candidate:1 1 udp 1 abc-123.local 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\n"
    )
    out = whep.strip_mdns_candidates(sdp)
    assert ".local" not in out and "127.0.0.1 5001" in out
    ufrag, pwd, cands, end = whep.parse_sdpfrag(
        "a=ice-ufrag:abcd\r\na=ice-pwd:pw\r\na=mid:0\r\n"
        "a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\na=end-of-candidates\r\n"
    )
    assert (ufrag, pwd, end) == ("abcd", "pw", True)
    assert cands == [("0", "2 1 udp 1 127.0.0.1 5001 typ host")]


def test_the_cheaper_ntp_clock_gives_aiortcs_value() -> None:
    import aiortc.clock

    from gateway.relay import ntp

    for _ in range(200):
        ours = ntp.current_ntp_time()
        theirs = ntp._original()
        # Taken a few microseconds apart (aiortc's rounds to whole microseconds):
        # equal to well within a millisecond, 2**32 / 1000 fraction units.
        assert abs(theirs - ours) < (1 << 32) // 1000, (ours, theirs)
    ntp.install()
    assert aiortc.clock.current_ntp_time is ntp.current_ntp_time
    assert aiortc.clock.datetime_from_ntp(ntp.current_ntp_time()).year >= 2026
