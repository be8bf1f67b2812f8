"""MANSRTSP (GB/T 28181 annex B): the playback control a platform sends in an INFO
within a Playback dialog (``Content-Type: Application/MANSRTSP``).

RTSP-style text; what WVP-GB28181-pro sends (and the standard shows)::

    PLAY RTSP/1.0         PAUSE RTSP/1.0       PLAY RTSP/1.0       PLAY RTSP/1.0
    CSeq: 7               CSeq: 8              CSeq: 9             CSeq: 10
    Range: npt=120-       PauseTime: now       Range: npt=now-     Scale: 2.000000

``Range: npt=N-`` seeks to N seconds after the start of the requested span, ``now``
resumes where the stream is; ``Scale`` is the speed (0.25–8 here; negative,
backwards, is refused). The version may be ``RTSP/1.0`` or ``MANSRTSP/1.0``. Strict on
size and syntax, lenient on header case and order and on line endings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_BODY = 1024
MIN_SCALE = 0.25
MAX_SCALE = 8.0
METHODS = ("PLAY", "PAUSE", "TEARDOWN")
_REQUEST_LINE = re.compile(r"^(PLAY|PAUSE|TEARDOWN)\s+(MANS)?RTSP/1\.0$", re.I)
_NPT = re.compile(r"^npt\s*=\s*(now|\d{1,9}(?:\.\d{1,6})?)\s*-\s*(\d{1,9}(?:\.\d{1,6})?)?$", re.I)


class MansrtspError(ValueError):
    """A control body we refuse; ``str()`` is fit for a SIP reason phrase."""


@dataclass(frozen=True, slots=True)
class Control:
    method: str  # PLAY, PAUSE, TEARDOWN
    cseq: int
    seek_s: float | None = None  # PLAY with Range: npt=N- (None: from where it is)
    scale: float | None = None  # PLAY with Scale


def parse(body: bytes) -> Control:
    """One MANSRTSP request; raises :class:`MansrtspError`."""
    if len(body) > MAX_BODY:
        raise MansrtspError(f"MANSRTSP body of {len(body)} bytes (at most {MAX_BODY})")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise MansrtspError("MANSRTSP body is not ASCII") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise MansrtspError("empty MANSRTSP body")
    match = _REQUEST_LINE.match(lines[0])
    if match is None:
        raise MansrtspError(f"bad MANSRTSP request line {lines[0][:40]!r}")
    method = match.group(1).upper()
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name or name in headers:
            raise MansrtspError(f"bad or repeated MANSRTSP header {line[:40]!r}")
        headers[name] = value.strip()
    cseq_text = headers.get("cseq", "")
    if not (cseq_text.isdigit() and len(cseq_text) <= 10):
        raise MansrtspError(f"bad CSeq {cseq_text[:20]!r}")
    seek: float | None = None
    scale: float | None = None
    if method == "PLAY":
        if "range" in headers:
            rng = _NPT.match(headers["range"])
            if rng is None:
                raise MansrtspError(f"bad Range {headers['range'][:40]!r} (npt=N- or npt=now-)")
            if rng.group(1).lower() != "now":
                seek = float(rng.group(1))
        if "scale" in headers:
            scale = _scale(headers["scale"])
    return Control(method, int(cseq_text), seek, scale)


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MansrtspError(f"bad Scale {text[:20]!r}") from None
    if not math.isfinite(value) or not MIN_SCALE <= value <= MAX_SCALE:
        raise MansrtspError(f"Scale {text[:20]} not supported ({MIN_SCALE:g}-{MAX_SCALE:g})")
    return value
