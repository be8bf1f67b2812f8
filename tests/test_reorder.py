"""B-frames are a reordering pattern; a lone backward timestamp step is a glitch."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from fractions import Fraction
from types import SimpleNamespace

import pytest

from gateway.config import StreamSettings
from gateway.media.assembler import Unit
from gateway.media.reorder import ReorderDetector
from gateway.streams.hub import Hub
from gateway.streams.ingest import RtspSource, _Session
from tests.rtsp_support import until
from tests.support import free_port
from tests.test_ingest import Ingest, fast

TICK = 3600  # one picture at 25 fps on the 90 kHz clock


def ippp(n: int, glitch_at: int | None = None) -> list[int]:
    """Presentation times of an IPPP stream; one unit ``glitch_at`` steps back 1.5 pictures."""
    pts = [i * TICK for i in range(n)]
    if glitch_at is not None:
        pts[glitch_at] -= TICK * 3 // 2
    return pts


def ibbp(n_groups: int) -> list[int]:
    """Presentation times in decode order of I P B B P B B ... (two B-frames per P)."""
    out = [0]
    for g in range(n_groups):
        p = (g + 1) * 3
        out += [p * TICK, (p - 2) * TICK, (p - 1) * TICK]
    return out


def feed(det: ReorderDetector, pts: list[int], dts: list[int | None] | None = None) -> bool:
    for i, p in enumerate(pts):
        det.feed(p, dts[i] if dts is not None else None)
    return det.b_frames


# -- the detector ---------------------------------------------------------------------------
def test_clean_ippp_with_one_backward_glitch_is_not_b_frames() -> None:
    det = ReorderDetector()
    assert not feed(det, ippp(200, glitch_at=57))
    assert det.glitches == 1


def test_ippp_with_a_glitch_every_window_is_not_b_frames() -> None:
    det = ReorderDetector()
    pts = ippp(400)
    for i in range(20, 400, det.window):  # one lone step per window, forever
        pts[i] -= TICK * 2
    assert not feed(det, pts)
    assert det.glitches == len(range(20, 400, det.window))


def test_one_unit_with_dts_differing_from_pts_is_a_glitch_only() -> None:
    pts = ippp(100)
    dts: list[int | None] = list(pts)
    dts[40] = pts[40] - 1  # a demuxer's one-off fix-up
    det = ReorderDetector()
    assert not feed(det, pts, dts)
    assert det.glitches == 1


def test_invented_first_timestamp_then_zero_is_not_b_frames() -> None:
    # The ingest invents pts 1 when FFmpeg gives the first keyframe of a session no
    # timestamp; the stream's own clock may then start at 0.
    det = ReorderDetector()
    assert not feed(det, [1, *ippp(100)])
    assert det.glitches == 1


def test_an_invented_timestamp_is_not_compared() -> None:
    det = ReorderDetector()
    det.feed(1, None, measured=False)
    assert not feed(det, [-400, 3200, 6800])  # the clock starts below the made-up 1
    assert det.glitches == 0


def test_real_ibbp_reordering_is_b_frames_from_pts_alone() -> None:
    det = ReorderDetector()
    pts = ibbp(20)
    assert feed(det, pts[:10])  # three groups: three backward steps
    assert det.glitches == 0  # the steps that made the pattern are not glitches
    assert feed(det, pts[10:])  # and it stays so


def test_real_ibbp_with_demuxer_dts_is_b_frames_at_once() -> None:
    pts = ibbp(5)
    dts: list[int | None] = [(i - 2) * TICK for i in range(len(pts))]  # dts lags by 2
    det = ReorderDetector()
    assert feed(det, pts[:3], dts[:3])
    assert det.glitches == 0


def test_one_b_frame_per_p_ibp_is_b_frames() -> None:
    pts = [0]
    for g in range(10):
        pts += [(2 * g + 2) * TICK, (2 * g + 1) * TICK]
    assert feed(ReorderDetector(), pts)


def test_glitch_long_before_a_real_pattern_stays_counted() -> None:
    det = ReorderDetector()
    feed(det, ippp(50, glitch_at=10))
    assert det.glitches == 1 and not det.b_frames
    assert feed(det, [50 * TICK + p for p in ibbp(5)])
    assert det.glitches == 1


def test_random_single_glitches_never_make_b_frames() -> None:
    rng = random.Random(7)
    for _ in range(50):
        det = ReorderDetector()
        pts = ippp(300)
        for i in rng.sample(range(1, 300), 3):
            pts[i] -= rng.randint(1, 5 * TICK)
        spread = sorted(i for i, (a, b) in enumerate(itertools.pairwise(pts)) if b < a)
        if any(b - a < det.window for a, b in zip(spread, spread[2:], strict=False)):
            continue  # three steps in one window: a pattern by definition
        assert not feed(det, pts)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        ReorderDetector(window=8, needed=1)
    with pytest.raises(ValueError):
        ReorderDetector(window=2, needed=3)


# -- the ingest's _emit -----------------------------------------------------------------------
@pytest.fixture
def session() -> Iterator[_Session]:
    loop = asyncio.new_event_loop()
    source = RtspSource("cam", "main", "rtsp://127.0.0.1:1/x", StreamSettings())
    hub = Hub("cam/main")
    s = _Session(source, hub, "rtsp://127.0.0.1:1/x", 1, loop)
    s._time_base = Fraction(1, 90000)
    source._session = s
    try:
        yield s
    finally:
        loop.close()


def _stream() -> SimpleNamespace:
    ctx = SimpleNamespace(
        name="hevc", width=640, height=360, profile="Main", has_b_frames=0, extradata=b""
    )
    return SimpleNamespace(codec_context=ctx, average_rate=Fraction(25), guessed_rate=None)


def _emit_all(session: _Session, pts: list[int], gop: int = 25) -> None:
    stream = _stream()
    for i, p in enumerate(pts):
        session._emit(Unit(b"\x00\x00\x01\x26\x01", p, None, i % gop == 0), stream)


def test_emit_keeps_passthrough_for_ippp_with_a_glitch(session: _Session) -> None:
    sub = session.hub.subscribe("test", maxsize=1000)
    _emit_all(session, [1, *ippp(120, glitch_at=60)])
    info = session.hub.info
    assert info is not None and not info.has_b_frames
    assert session.delivered == 121
    # the measured 1 -> 0 step at the start and the one at unit 60: counted, not B-frames
    assert session.source.stats()["timestamp_glitches"] == 2
    units = [sub.get_nowait() for _ in range(121)]
    dts = [u.dts for u in units if u is not None]
    assert len(dts) == 121 and None not in dts
    assert all(b > a for a, b in itertools.pairwise(dts))  # rising, glitch or not


def test_emit_flags_a_real_ibbp_stream(session: _Session) -> None:
    _emit_all(session, ibbp(20), gop=61)
    info = session.hub.info
    assert info is not None and info.has_b_frames
    assert session.source.stats()["timestamp_glitches"] == 0


# -- end to end: the simulator's H.265 with and without --bframes -------------------------------
def _sim_url(sim_factory, *extra: str) -> str:
    base = f"127.{random.randint(60, 250)}.{random.randint(0, 254)}.1"
    port = str(free_port(base))
    sim = sim_factory(
        *("--base", base, "--rtsp-port", port, "--codec", "h265", "--gop", "25"),
        *("--size", "640x360", "--sub-size", "320x180", "--no-onvif", "--no-wsd", *extra),
    )
    return sim.cameras[0]["rtsp_sub"]


@pytest.mark.parametrize("bframes", [False, True])
async def test_sim_h265_b_frames_detected_only_when_encoded(sim_factory, bframes: bool) -> None:
    url = _sim_url(sim_factory, *(["--bframes"] if bframes else []))
    settings: StreamSettings = fast(open_timeout_s=10, read_timeout_s=10, stall_timeout_s=10)
    async with Ingest(url, settings) as ing:
        await until(lambda: len(ing.units) >= 60, 60, "60 access units")
        info = ing.hub.info
        assert info is not None and info.codec == "hevc"
        assert info.has_b_frames is bframes

        def reorder_says() -> bool | None:
            session = ing.source._session  # None only between reconnects
            return None if session is None else session.reorder.b_frames

        # the timestamps themselves tell, not only the decoder's SPS-derived flag
        if bframes:
            await until(lambda: reorder_says() is True, 30, "reordering seen in timestamps")
        else:
            assert reorder_says() in (None, False)


# -- the ingest's demux loop: the cause seen with the simulator -------------------------------
class _Packet:
    def __init__(self, pts: int | None, keyframe: bool) -> None:
        self.pts = self.dts = pts
        self.is_keyframe = keyframe
        self.data = b"\x00\x00\x01\x26\x01\xaf" if keyframe else b"\x00\x00\x01\x02\x01\xd0"
        self.size = len(self.data)

    def __bytes__(self) -> bytes:
        return self.data


def test_first_picture_without_timestamp_then_clock_below_it(session: _Session) -> None:
    # FFmpeg sets the RTP clock's zero from the PLAY reply's RTP-Info rtptime, which the
    # simulator takes from the wall clock while its frames carry the encoder's time line,
    # a frame or two behind under load: the first pictures come out at pts <= 0. FFmpeg's
    # parser gives the first one no timestamp at all, and the ingest made up pts 1.
    pts: list[int | None] = [None, -400, 3200, *range(6800, 100 * TICK, TICK)]
    packets = [_Packet(p, i % 25 == 0) for i, p in enumerate(pts)]
    stream = _stream()
    stream.time_base = Fraction(1, 90000)
    container = SimpleNamespace(
        streams=SimpleNamespace(video=[stream]), demux=lambda _s: iter(packets)
    )
    session._demux(container)
    info = session.hub.info
    assert info is not None and not info.has_b_frames
    assert session.delivered == len(packets)
    assert session.source.stats()["timestamp_glitches"] == 0
