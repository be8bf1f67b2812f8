"""A cheaper ``aiortc.clock.current_ntp_time``: the same value, from ``time.time()``.

aiortc's sender calls ``clock.current_ntp_time()`` twice per RTP packet (the
abs-send-time header extension, and the timestamp for its next sender report). It
builds two timezone-aware ``datetime`` objects and a ``timedelta`` each time: 8 % of
a passthrough viewer's CPU in a py-spy profile (docs/benchmarks.md, relay). This
computes the same 64-bit NTP timestamp (RFC 5905: seconds since 1900 in the high 32
bits, the fraction in the low 32) from ``time.time()`` in a few arithmetic steps.
aiortc reads the function through its ``clock`` module at call time, so replacing
the module attribute is enough; :func:`install` is idempotent.
"""

from __future__ import annotations

import time

import aiortc.clock

NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_original = aiortc.clock.current_ntp_time


def current_ntp_time() -> int:
    t = time.time()
    seconds = int(t)
    return ((seconds + NTP_UNIX_OFFSET) << 32) | int((t - seconds) * 4_294_967_296)


def install() -> None:
    aiortc.clock.current_ntp_time = current_ntp_time
