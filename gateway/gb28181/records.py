"""Recordings for an upper platform: the RecordInfo query and the footage a Playback or
Download INVITE plays.

``RecordSource`` is the seam to the recorder: :class:`GatewayRecords` answers it from
this gateway's recorder index for its own cameras and, for a child's camera (a path
``child/…``), through the cascade (``gateway.cascade.access``: the same ``recordings``
and ``clip`` operations the operator UI uses to play a child's recordings), so
recordings of the lowest level are reachable from the upper platform.

RecordInfo is answered like Catalog: ``SumNum`` on every MESSAGE, a few items each,
the next after the 200 OK. The MESSAGE carrying the query is refused with a 4xx when it
cannot be answered (unknown channel, bad or reversed times, a span over
:data:`MAX_QUERY_S`), so the platform is told at once instead of waiting for a timeout.
GB times carry no zone: they are the gateway's local time, as on any NVR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gateway.cascade import access
from gateway.cascade.local import Local
from gateway.gb28181 import manscdp
from gateway.gb28181.platform import Platform
from gateway.gb28181.ps.recorded import Source
from gateway.gb28181.sip.agent import SipTimeout, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage

log = logging.getLogger(__name__)

MAX_QUERY_S = 31 * 86400  # a month: what NVRs let one RecordInfo cover
MAX_ITEMS = 2000  # items of one answer; SumNum says how many were sent
JOIN_GAP_S = 1.0  # segments closer than this are one span
FETCH_TIMEOUT_S = 60.0  # one segment's clip through the cascade
TYPES = ("all", "time", "alarm", "manual")


class RecordsError(Exception):
    """Footage that cannot be listed or played; ``status`` is a SIP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Span:
    start: float  # epoch seconds
    end: float
    alarm: bool = False  # recorded because of an event


@dataclass
class Footage:
    """What to play, oldest first: (source, wall-clock start of its first frame, end)."""

    files: list[tuple[Source, float, float]]
    cleanup: Callable[[], None] = field(default=lambda: None)


class RecordSource(Protocol):
    async def spans(self, camera: str, start: float, end: float) -> list[Span]:
        """Recorded spans of ``camera`` overlapping [start, end]; RecordsError if it cannot."""
        ...

    async def footage(self, camera: str, start: float, end: float) -> Footage:
        """The files holding [start, end]; RecordsError(404) when nothing is recorded."""
        ...


# -- times ------------------------------------------------------------------------------


def parse_gb_time(text: str) -> float:
    """``2026-12-06T10:00:00`` (local time, as GB/T 28181 writes it) → epoch seconds."""
    text = text.strip()
    if not 10 <= len(text) <= 32:
        raise ValueError(f"bad time {text[:40]!r}")
    try:
        value = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise ValueError(f"bad time {text[:40]!r} (expected YYYY-MM-DDTHH:MM:SS)") from None
    try:
        if value.tzinfo is None:
            return time.mktime(value.timetuple()) + value.microsecond / 1e6
        return value.timestamp()
    except (OverflowError, OSError):  # year 1 or 9999 on this platform's C library
        raise ValueError(f"time {text[:40]!r} out of range") from None


def gb_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def join_spans(rows: list[dict[str, Any]]) -> list[Span]:
    """API segment rows (ISO ``start``/``end``) → spans, touching segments joined."""
    spans: list[Span] = []
    for row in sorted(rows, key=lambda r: str(r.get("start"))):
        try:
            start = datetime.fromisoformat(str(row["start"])).timestamp()
            end = datetime.fromisoformat(str(row["end"])).timestamp()
        except (KeyError, ValueError):
            continue
        alarm = bool(row.get("has_event")) or row.get("kind") == "event"
        last = spans[-1] if spans else None
        if last is not None and last.alarm == alarm and start - last.end <= JOIN_GAP_S:
            spans[-1] = Span(last.start, max(last.end, end), alarm)
        elif end > start:
            spans.append(Span(start, end, alarm))
    return spans


# -- the gateway's recordings -------------------------------------------------------------


class GatewayRecords:
    """:class:`RecordSource` over this gateway's recorder and, for a child's camera, the
    cascade (see the module docstring); a child's clips wait under ``data_dir``."""

    def __init__(self, here: Local, data_dir: Path) -> None:
        self.here = here
        self.tmp_dir = data_dir / "gb28181_playback"

    async def spans(self, camera: str, start: float, end: float) -> list[Span]:
        return join_spans(await self._rows(camera, start, end))

    async def footage(self, camera: str, start: float, end: float) -> Footage:
        if "/" in camera:
            return await self._remote(camera, start, end)
        rec = self.here.recorder
        if rec is None:
            raise RecordsError(404, "the recorder is not running on this gateway")
        rows = await asyncio.to_thread(rec.index.segments, camera, start, end)
        files: list[tuple[Source, float, float]] = []
        for row in rows:
            with contextlib.suppress(ValueError):
                files.append((rec.index.abs(row["path"]), float(row["start"]), float(row["end"])))
        if not files:
            raise RecordsError(404, f"no recording of {camera} in that span")
        return Footage(files)

    async def _remote(self, camera: str, start: float, end: float) -> Footage:
        """A child's footage, one of its segments at a time, as the cascade's clips.

        Each clip is asked from its segment's start (a keyframe, so the clip's first frame
        is at that known time); the first is fetched now (a child that cannot serve it is
        refused before the 200 OK), the others by the reader as it gets to them, so a
        long span neither waits for nor fills the disk with all of its footage.
        """
        spans: list[tuple[float, float]] = []
        for row in await self._rows(camera, start, end):
            try:
                s0 = datetime.fromisoformat(str(row["start"])).timestamp()
                s1 = datetime.fromisoformat(str(row["end"])).timestamp()
            except (KeyError, ValueError):
                continue
            if s1 > start and s0 < end:
                spans.append((s0, min(s1, end)))
        if not spans:
            raise RecordsError(404, f"no recording of {camera} in that span")
        loop = asyncio.get_running_loop()
        first = await self._fetch(camera, *spans[0])

        def fetcher(s0: float, s1: float) -> Callable[[], Path]:
            def fetch() -> Path:
                future = asyncio.run_coroutine_threadsafe(self._fetch(camera, s0, s1), loop)
                return future.result(FETCH_TIMEOUT_S)

            return fetch

        files: list[tuple[Source, float, float]] = [(first, *spans[0])]
        files += [(fetcher(s0, s1), s0, s1) for s0, s1 in spans[1:]]
        return Footage(files, lambda: first.unlink(missing_ok=True))

    async def _rows(self, camera: str, start: float, end: float) -> list[dict[str, Any]]:
        try:
            return await access.recordings(
                self.here, camera, {"start": _iso(start), "end": _iso(end)}
            )
        except access.AccessError as err:
            raise RecordsError(_sip_status(err.status), str(err)) from None

    async def _fetch(self, camera: str, start: float, end: float) -> Path:
        """The cascade's clip of [start, end] in a temporary file. Raises RecordsError."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=".mp4", dir=self.tmp_dir)
        path = Path(name)
        try:
            with open(fd, "wb") as out:
                params = {"start": _iso(start), "end": _iso(end)}
                async for chunk in access.clip(self.here, camera, params):
                    await asyncio.to_thread(out.write, chunk)
        except access.AccessError as err:
            path.unlink(missing_ok=True)
            raise RecordsError(_sip_status(err.status), str(err)) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path


def _sip_status(http: int) -> int:
    return {400: 400, 404: 404, 501: 501}.get(http, 503 if http >= 500 else 400)


# -- RecordInfo -----------------------------------------------------------------------------


class RecordInfo:
    """Answers RecordInfo queries of one platform from a :class:`RecordSource`."""

    def __init__(self, client: Platform, source: RecordSource | None) -> None:
        self.client = client
        self.source = source
        self.answered = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, req: SipMessage, query: manscdp.Query) -> SipMessage:
        """Check the query, answer 200 and send the list, or refuse with a 4xx."""
        cfg = self.client.cfg
        x = query.xml
        try:
            start = parse_gb_time(x.findtext("StartTime") or "")
            end = parse_gb_time(x.findtext("EndTime") or "")
        except ValueError as err:
            return _refuse(req, 400, f"RecordInfo: {err}")
        kind = (x.findtext("Type") or "all").strip().lower()
        if end <= start:
            return _refuse(req, 400, "RecordInfo: EndTime is not after StartTime")
        if end - start > MAX_QUERY_S:
            return _refuse(req, 400, f"RecordInfo: span longer than {MAX_QUERY_S // 86400} days")
        if kind not in TYPES:
            return _refuse(req, 400, f"RecordInfo: unknown Type {kind[:20]!r}")
        channel = await asyncio.to_thread(self.client.directory.camera_for, query.device_id)
        if channel is None:
            log.info("gb28181 %s: RecordInfo for unknown channel %r", cfg.id, query.device_id[:24])
            return _refuse(req, 404, "RecordInfo: unknown channel")
        if self.source is None:
            return _refuse(req, 501, "RecordInfo: no recorder on this gateway")
        task = asyncio.create_task(self._answer(query, channel.gb_id, channel.camera_path,
                                                channel.name, start, end, kind))  # fmt: skip
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return make_response(req, 200, "OK", new_tag())

    async def _answer(
        self, q: manscdp.Query, gb_id: str, camera: str, name: str, t0: float, t1: float, kind: str
    ) -> None:
        cfg = self.client.cfg
        assert self.source is not None
        try:
            spans = await self.source.spans(camera, t0, t1)
        except RecordsError as err:
            log.info("gb28181 %s: RecordInfo of %s: %s", cfg.id, camera, err)
            spans = []  # the platform still gets its (empty) answer
        except Exception:
            log.exception("gb28181 %s: RecordInfo of %s failed", cfg.id, camera)
            spans = []
        if kind == "alarm":
            spans = [s for s in spans if s.alarm]
        elif kind == "manual":
            spans = []  # nothing here is recorded by hand
        spans = spans[:MAX_ITEMS]
        items: list[list[tuple[str, object]]] = [
            [
                ("DeviceID", gb_id),
                ("Name", name),
                ("FilePath", f"{gb_id}-{int(s.start)}"),
                ("Address", "edge-gateway"),
                ("StartTime", gb_time(max(s.start, t0))),
                ("EndTime", gb_time(min(s.end, t1))),
                ("Secrecy", 0),
                ("Type", "alarm" if s.alarm else "time"),
            ]
            for s in spans
        ]
        page = cfg.catalog_page
        try:
            for first in range(0, max(len(items), 1), page):
                chunk = items[first : first + page]
                fields: list[tuple[str, object]] = [
                    ("CmdType", "RecordInfo"),
                    ("SN", q.sn),
                    ("DeviceID", gb_id),
                    ("Name", name),
                    ("SumNum", len(items)),
                    ("RecordList", chunk),
                ]
                resp = await self.client.send_message(
                    manscdp.render("Response", fields, cfg.charset)
                )
                if not 200 <= resp.status < 300:
                    log.warning("gb28181 %s: RecordInfo answer refused: %s", cfg.id, resp.status)
                    return
        except (SipTimeout, OSError) as err:
            log.warning("gb28181 %s: RecordInfo answer not delivered: %s", cfg.id, err)
            return
        self.answered += 1
        log.info("gb28181 %s: RecordInfo of %s: %d spans sent", cfg.id, camera, len(items))


def _refuse(req: SipMessage, status: int, reason: str) -> SipMessage:
    return make_response(req, status, reason[:120], new_tag())
