"""INVITE s=Playback / s=Download from the platform: our recordings of the SDP's ``t=``
span as PS over RTP, MANSRTSP control (INFO: PLAY, PAUSE, seek, Scale) within the
dialog, the MediaStatus MESSAGE (NotifyType 121) when the span has been sent, BYE.

``t=`` carries Unix seconds at WVP-GB28181-pro (``DateUtil.yyyy_MM_dd_HH_mm_ssToTimestamp``)
and NTP seconds at some vendor platforms (RFC 4566); values past 3·10⁹ are taken as NTP.
The MediaStatus MESSAGE goes within the dialog (its Call-ID and tags): that is how a
platform finds the stream it ends (WVP looks the Call-ID up).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.gb28181 import manscdp, mansrtsp, sdp
from gateway.gb28181.bye import send_bye
from gateway.gb28181.platform import Platform
from gateway.gb28181.ps.recorded import RecordedStream, codec_of
from gateway.gb28181.ps.rtp import SinkError, open_sink
from gateway.gb28181.records import Footage, RecordsError, RecordSource
from gateway.gb28181.sip.agent import SipTimeout, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage, addr_params, addr_uri, uri_user

log = logging.getLogger(__name__)
SESSIONS = ("Playback", "Download")
NTP_OFFSET = 2_208_988_800  # seconds from 1900 to 1970
MAX_SPAN_S = 24 * 3600.0  # one INVITE plays at most a day
MAX_STREAMS = 64
MIN_SPEED, MAX_SPEED = 1.0, 32.0  # downloadspeed


@dataclass
class PlaybackDialog:
    call_id: str
    camera: str
    channel_id: str
    to_tag: str
    answer: bytes
    stream: RecordedStream
    footage: Footage
    local: str
    remote: str
    remote_target: str
    acked: bool = False
    info_cseq: int = 0


def parse_span(t_line: str) -> tuple[float, float]:
    """``t=start end`` → epoch seconds; ValueError for a missing, reversed or huge span."""
    parts = t_line.split()
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 12 for p in parts):
        raise ValueError(f"bad t= line {t_line[:40]!r} (start and end seconds)")
    start, end = (float(p) - NTP_OFFSET if int(p) > 3_000_000_000 else float(p) for p in parts)
    if start <= 0 or end <= start:
        raise ValueError("t= end is not after its start")
    if end - start > MAX_SPAN_S:
        raise ValueError(f"t= span longer than {MAX_SPAN_S / 3600:g} h")
    return start, end


class Playback:
    """The Playback/Download dialogs of one platform."""

    def __init__(self, client: Platform, source: RecordSource | None) -> None:
        self.client = client
        self.source = source
        self.dialogs: dict[str, PlaybackDialog] = {}
        self.media_status_sent = 0
        self._sn = itertools.count(1)
        self._cseq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def wants(self, req: SipMessage) -> bool:
        """Whether ``req`` belongs here (a Playback/Download INVITE, its dialog, an INFO)."""
        if req.call_id in self.dialogs or req.method == "INFO":
            return True
        return req.method == "INVITE" and sdp.session_of(req.body).lower() in (
            "playback",
            "download",
        )

    def playing(self) -> int:
        return len(self.dialogs)

    async def handle(self, req: SipMessage) -> SipMessage | None:
        if req.method == "INVITE":
            return await self._invite(req)
        dialog = self.dialogs.get(req.call_id)
        if req.method == "ACK":
            if dialog is not None and not dialog.acked:
                dialog.acked = True
                dialog.stream.begin()
            return None
        if dialog is None:
            return make_response(req, 481, "Call/Transaction Does Not Exist", new_tag())
        if req.method == "INFO":
            return self._info(req, dialog)
        if req.method == "CANCEL" and dialog.acked:
            return make_response(req, 481, "Call/Transaction Does Not Exist", new_tag())
        await self._close(req.call_id, f"{req.method} from the platform")
        return make_response(req, 200, "OK", addr_params(req.get("To")).get("tag", ""))

    async def _invite(self, req: SipMessage) -> SipMessage:
        cfg = self.client.cfg
        known = self.dialogs.get(req.call_id)
        if known is not None:
            return self._ok(req, known)
        channel_id = uri_user(req.uri) or uri_user(req.get("To").split("<")[-1].rstrip(">"))
        channel = await asyncio.to_thread(self.client.directory.camera_for, channel_id)
        if channel is None:
            log.info("gb28181 %s: playback INVITE for unknown channel %r", cfg.id, channel_id[:24])
            return _refuse(req, 404, "Channel Not Found")
        try:
            offer = sdp.parse_offer(req.body, SESSIONS)
            start, end = parse_span(offer.t_line)
        except (sdp.SdpError, ValueError) as err:
            log.info("gb28181 %s: playback of %s refused: %s", cfg.id, channel.camera_path, err)
            return _refuse(req, 488, f"Not Acceptable Here: {err}")
        if self.source is None:
            return _refuse(req, 488, "Not Acceptable Here: no recordings on this gateway")
        if len(self.dialogs) >= MAX_STREAMS:
            return _refuse(req, 486, "Busy Here: too many playback streams")
        try:
            footage = await self.source.footage(channel.camera_path, start, end)
        except RecordsError as err:
            log.info("gb28181 %s: playback of %s: %s", cfg.id, channel.camera_path, err)
            return _refuse(req, err.status, str(err))
        try:
            codec = await asyncio.to_thread(codec_of, footage.files)
            request = sdp.media_request(offer, req.call_id, channel.camera_path, cfg.local_host)
            sink = await open_sink(request.transport, request.local_host, request.remote_host,
                                   request.remote_port, 5.0)  # fmt: skip
        except SinkError as err:
            footage.cleanup()
            return _refuse(req, 488, f"Not Acceptable Here: {err}")
        except BaseException:
            footage.cleanup()
            raise
        download = offer.session == "Download"
        speed = min(max(offer.download_speed, MIN_SPEED), MAX_SPEED) if download else 1.0
        call_id = req.call_id
        try:
            stream = RecordedStream(
                request, sink, footage.files, codec, start, end, speed=speed,
                on_done=lambda why: self._done(call_id, why),
            )  # fmt: skip
        except ValueError as err:
            sink.close()
            footage.cleanup()
            return _refuse(req, 488, f"Not Acceptable Here: {err}")
        host = sink.local_host if sink.local_host not in ("0.0.0.0", "") else None
        host = host or self.client.agent.via_host
        body = sdp.answer(offer, device_id=channel.gb_id, host=host, port=sink.local_port)
        to_tag = new_tag()
        contact = req.get("Contact")
        dialog = PlaybackDialog(
            req.call_id,
            channel.camera_path,
            channel.gb_id,
            to_tag,
            body,
            stream,
            footage,
            local=f"<{addr_uri(req.get('To'))}>;tag={to_tag}",
            remote=req.get("From"),
            remote_target=addr_uri(contact) if contact else self.client.server_uri,
        )
        self.dialogs[req.call_id] = dialog
        log.info("gb28181 %s: %s of %s (%d s) to %s:%s (%s, %s, ssrc %s)", cfg.id,
                 offer.session, channel.camera_path, end - start, offer.host, offer.port,
                 offer.transport, codec, offer.ssrc_text)  # fmt: skip
        loop = asyncio.get_running_loop()
        loop.call_later(self.client.agent.timers.b + 1, self._check_ack, req.call_id)
        return self._ok(req, dialog)

    def _ok(self, req: SipMessage, dialog: PlaybackDialog) -> SipMessage:
        resp = make_response(req, 200, "OK", dialog.to_tag)
        resp.add("Contact", f"<sip:{self.client.cfg.device_id}@{self.client.agent.contact_host}>")
        resp.add("Content-Type", "application/sdp")
        resp.body = dialog.answer
        return resp

    def _info(self, req: SipMessage, dialog: PlaybackDialog) -> SipMessage:
        to_tag = addr_params(req.get("To")).get("tag", "") or dialog.to_tag
        try:
            control = mansrtsp.parse(req.body)
        except mansrtsp.MansrtspError as err:
            log.info("gb28181: playback control of %s refused: %s", dialog.camera, err)
            return make_response(req, 400, f"Bad Request: {err}"[:120], to_tag)
        stream = dialog.stream
        if control.method == "PAUSE":
            stream.pause()
        elif control.method == "PLAY":
            stream.play(control.seek_s, control.scale)
        else:  # TEARDOWN: the BYE that follows ends the dialog
            stream.pause()
        dialog.info_cseq = control.cseq
        log.info("gb28181: playback of %s: %s (seek %s, scale %s)", dialog.camera,
                 control.method, control.seek_s, control.scale)  # fmt: skip
        return make_response(req, 200, "OK", to_tag)

    def _check_ack(self, call_id: str) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is not None and not dialog.acked:
            self._spawn(self._close(call_id, "no ACK"))

    def _done(self, call_id: str, why: str) -> None:
        """The sender ended by itself. At the end of the span: MediaStatus, and the dialog
        stays until the platform's BYE (it may still seek back); otherwise (the platform
        went away or stopped reading) the dialog ends with our BYE."""
        dialog = self.dialogs.get(call_id)
        if dialog is None:
            return
        if why == "end":
            self._spawn(self._media_status(dialog))
        else:
            self._spawn(self._hang_up(dialog, why))

    async def _hang_up(self, dialog: PlaybackDialog, why: str) -> None:
        await self._close(dialog.call_id, why)
        await self._bye(dialog)

    async def _media_status(self, dialog: PlaybackDialog) -> None:
        cfg = self.client.cfg
        body = manscdp.render(
            "Notify",
            [("CmdType", "MediaStatus"), ("SN", next(self._sn)),
             ("DeviceID", dialog.channel_id), ("NotifyType", "121")],
            cfg.charset,
        )  # fmt: skip
        msg = SipMessage(method="MESSAGE", uri=dialog.remote_target)
        msg.add("From", dialog.local)
        msg.add("To", dialog.remote)
        msg.add("Call-ID", dialog.call_id)
        msg.add("CSeq", f"{next(self._cseq)} MESSAGE")
        msg.add("Content-Type", manscdp.CONTENT_TYPE)
        msg.body = body
        try:
            resp = await self.client.agent.request(msg)
            self.media_status_sent += 1
            log.info("gb28181 %s: MediaStatus 121 for %s answered %s", cfg.id, dialog.camera,
                     resp.status)  # fmt: skip
        except (SipTimeout, OSError) as err:
            log.info("gb28181 %s: MediaStatus for %s unanswered: %s", cfg.id, dialog.camera, err)

    async def _close(self, call_id: str, why: str) -> None:
        dialog = self.dialogs.pop(call_id, None)
        if dialog is None:
            return
        log.info("gb28181 %s: playback of %s closed: %s", self.client.cfg.id, dialog.camera, why)
        try:
            await dialog.stream.stop()
        finally:
            dialog.footage.cleanup()

    async def close_all(self) -> None:
        """Stop every playback and hang up each dialog with a BYE (best effort)."""
        dialogs = list(self.dialogs.values())
        for dialog in dialogs:
            await self._close(dialog.call_id, "stopping")
        await asyncio.gather(*(self._bye(d) for d in dialogs if d.acked))

    async def _bye(self, dialog: PlaybackDialog) -> None:
        await send_bye(self.client.agent, dialog, next(self._cseq), "the playback")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _refuse(req: SipMessage, status: int, reason: str) -> SipMessage:
    return make_response(req, status, reason[:120], new_tag())
