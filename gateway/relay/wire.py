"""Messages between the gateway and its relay workers, over one stream socket each.

A frame is ``length (u32, big-endian) | kind (u8) | body``, the length counting the
kind and the body. Two kinds:

* ``CONTROL``: a JSON object with an ``op`` (open, candidates, close, feed_end,
  config; answer, error, closed, stats);
* ``UNIT``: one access unit of feed ``feed``: a fixed header (:data:`_UNIT`) and the
  unit's bytes, so video never goes through JSON.

Both ends are ours and the socket is a private socketpair, but a frame is still
checked (size, kind, header, JSON shape) and a bad one ends the connection with a
clear :class:`WireError` instead of undefined behaviour. No library fits better:
``multiprocessing.Connection`` pickles (slow for video, and unpickling is code
execution), and the framing is twenty lines.
"""

from __future__ import annotations

import asyncio
import json
import struct
from fractions import Fraction
from typing import Any

from gateway.media.access_unit import AccessUnit

CONTROL = 1
UNIT = 2
MAX_FRAME = 32 << 20  # a 4K keyframe is a few MB; anything this big is an error

_HEAD = struct.Struct(">IB")
# feed, pts, dts (or NO_DTS), time base num/den, keyframe, epoch, wallclock
_UNIT = struct.Struct(">IqqIIBId")
NO_DTS = -(1 << 63)


class WireError(ValueError):
    """A frame that is not ours: the connection is ended."""


def control(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":")).encode()
    return _HEAD.pack(len(body) + 1, CONTROL) + body


def unit(feed: int, au: AccessUnit) -> list[bytes]:
    """The frame for one access unit, as pieces for ``writelines`` (no copy of the data)."""
    tb = au.time_base
    head = _UNIT.pack(
        feed,
        au.pts,
        NO_DTS if au.dts is None else au.dts,
        tb.numerator,
        tb.denominator,
        1 if au.keyframe else 0,
        au.epoch & 0xFFFFFFFF,
        au.wallclock,
    )
    return [_HEAD.pack(1 + len(head) + len(au.data), UNIT), head, au.data]


async def read(reader: asyncio.StreamReader) -> tuple[int, Any]:
    """The next frame: ``(CONTROL, dict)`` or ``(UNIT, (feed, AccessUnit))``.

    Raises :class:`asyncio.IncompleteReadError` at the end of the stream and
    :class:`WireError` for a frame that is not well formed.
    """
    length, kind = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if not 1 <= length <= MAX_FRAME:
        raise WireError(f"frame of {length} bytes")
    body = await reader.readexactly(length - 1)
    return kind, decode(kind, body)


def decode(kind: int, body: bytes) -> Any:
    if kind == CONTROL:
        try:
            msg = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise WireError(f"control frame is not JSON: {err}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise WireError("control frame without an op")
        return msg
    if kind == UNIT:
        if len(body) < _UNIT.size:
            raise WireError(f"unit frame of {len(body)} bytes")
        feed, pts, dts, num, den, key, epoch, wall = _UNIT.unpack_from(body)
        if num == 0 or den == 0:
            raise WireError("unit frame with a zero time base")
        au = AccessUnit(
            data=body[_UNIT.size :],
            pts=pts,
            dts=None if dts == NO_DTS else dts,
            time_base=Fraction(num, den),
            keyframe=bool(key),
            wallclock=wall,
            epoch=epoch,
        )
        return feed, au
    raise WireError(f"unknown frame kind {kind}")
