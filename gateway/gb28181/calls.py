"""INVITE (s=Play) / ACK / BYE from the platform: the channel id picks the camera, the
media backend opens the stream, our SDP answers with the same ``y=`` SSRC. A dialog
whose ACK never comes is closed again, so no stream leaks."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.gb28181 import sdp
from gateway.gb28181.bye import send_bye
from gateway.gb28181.media_api import MediaBackend, MediaError, MediaSession
from gateway.gb28181.platform import Platform
from gateway.gb28181.playback import Playback
from gateway.gb28181.records import RecordSource
from gateway.gb28181.sip.agent import Addr, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage, addr_params, addr_uri, uri_user

log = logging.getLogger(__name__)
MAX_CALLS = 256


@dataclass
class Dialog:
    call_id: str
    camera: str
    to_tag: str
    answer: bytes
    session: MediaSession
    local: str = ""  # our side of the dialog (the INVITE's To, with our tag)
    remote: str = ""  # the platform's side (the INVITE's From, with its tag)
    remote_target: str = ""  # where a BYE of ours goes (the INVITE's Contact)
    acked: bool = False


class Calls:
    def __init__(
        self, client: Platform, media: MediaBackend | None, records: RecordSource | None = None
    ) -> None:
        self.client = client
        self.media = media
        self.dialogs: dict[str, Dialog] = {}
        self.playback = Playback(client, records)  # s=Playback/Download and their INFO

    def playing(self) -> int:
        return len(self.dialogs) + self.playback.playing()

    async def handle(self, req: SipMessage, addr: Addr) -> SipMessage | None:
        if self.playback.wants(req):
            return await self.playback.handle(req)
        if req.method == "INVITE":
            return await self._invite(req)
        if req.method == "ACK":
            dialog = self.dialogs.get(req.call_id)
            if dialog is not None:
                dialog.acked = True
            return None
        if req.method == "CANCEL":
            dialog = self.dialogs.get(req.call_id)
            if dialog is None or dialog.acked:
                return make_response(req, 481, "Call/Transaction Does Not Exist", new_tag())
            await self._close(req.call_id, "cancelled")
            return make_response(req, 200, "OK", new_tag())
        # BYE
        if req.call_id not in self.dialogs:
            return make_response(req, 481, "Call/Transaction Does Not Exist", new_tag())
        to_tag = addr_params(req.get("To")).get("tag", "")
        await self._close(req.call_id, "BYE from the platform")
        return make_response(req, 200, "OK", to_tag)

    async def _invite(self, req: SipMessage) -> SipMessage:
        cfg = self.client.cfg
        known = self.dialogs.get(req.call_id)
        if known is not None:  # a re-INVITE of a playing dialog: same answer
            return self._ok(req, known)
        channel_id = uri_user(req.uri) or uri_user(req.get("To").split("<")[-1].rstrip(">"))
        channel = await asyncio.to_thread(self.client.directory.camera_for, channel_id)
        if channel is None:
            log.info("gb28181 %s: INVITE for unknown channel %r", cfg.id, channel_id[:24])
            return make_response(req, 404, "Channel Not Found", new_tag())
        try:
            offer = sdp.parse_offer(req.body)
        except sdp.SdpError as err:
            log.info("gb28181 %s: INVITE for %s refused: %s", cfg.id, channel.camera_path, err)
            return make_response(req, 488, f"Not Acceptable Here: {err}"[:120], new_tag())
        if self.media is None:
            return make_response(req, 488, "Not Acceptable Here: no media backend", new_tag())
        if len(self.dialogs) >= MAX_CALLS:
            return make_response(req, 486, "Busy Here: too many streams", new_tag())
        request = sdp.media_request(offer, req.call_id, channel.camera_path, cfg.local_host)
        try:
            session = await self.media.open(request)
        except MediaError as err:
            log.warning("gb28181 %s: stream of %s not opened: %s", cfg.id, channel.camera_path, err)
            return make_response(req, 488, f"Not Acceptable Here: {err}"[:120], new_tag())
        except Exception as err:
            log.exception("gb28181 %s: media backend failed for %s", cfg.id, channel.camera_path)
            reason = f"Server Internal Error: {type(err).__name__}"
            return make_response(req, 500, reason, new_tag())
        host = session.local_host
        if host in ("0.0.0.0", ""):
            host = self.client.agent.via_host
        body = sdp.answer(offer, device_id=channel.gb_id, host=host, port=session.local_port)
        to_tag = new_tag()
        contact = req.get("Contact")
        dialog = Dialog(
            req.call_id,
            channel.camera_path,
            to_tag,
            body,
            session,
            local=f"<{addr_uri(req.get('To'))}>;tag={to_tag}",
            remote=req.get("From"),
            remote_target=addr_uri(contact) if contact else self.client.server_uri,
        )
        self.dialogs[req.call_id] = dialog
        log.info(
            "gb28181 %s: playing %s to %s:%s (%s, ssrc %s)",
            cfg.id,
            channel.camera_path,
            offer.host,
            offer.port,
            offer.transport,
            offer.ssrc_text,
        )
        asyncio.get_running_loop().call_later(
            self.client.agent.timers.b + 1, self._check_ack, req.call_id
        )
        return self._ok(req, dialog)

    def _ok(self, req: SipMessage, dialog: Dialog) -> SipMessage:
        resp = make_response(req, 200, "OK", dialog.to_tag)
        resp.add("Contact", f"<sip:{self.client.cfg.device_id}@{self.client.agent.contact_host}>")
        resp.add("Content-Type", "application/sdp")
        resp.body = dialog.answer
        return resp

    def _check_ack(self, call_id: str) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is not None and not dialog.acked:
            task = asyncio.ensure_future(self._close(call_id, "no ACK"))
            task.add_done_callback(lambda _t: None)

    async def _close(self, call_id: str, why: str) -> None:
        dialog = self.dialogs.pop(call_id, None)
        if dialog is None or self.media is None:
            return
        log.info("gb28181 %s: stream of %s closed: %s", self.client.cfg.id, dialog.camera, why)
        try:
            await self.media.close(call_id)
        except Exception:
            log.exception("gb28181: closing the stream of %s failed", dialog.camera)

    async def media_ended(self, call_id: str, reason: str) -> bool:
        """The stream of ``call_id`` ended by itself (camera gone, the platform stopped
        reading, a send error): forget its dialog and hang up with a BYE, so the platform
        does not wait for video that will not come. False if the dialog is not ours."""
        dialog = self.dialogs.pop(call_id, None)
        if dialog is None:
            return False
        log.info("gb28181 %s: stream of %s ended: %s; sending BYE",
                 self.client.cfg.id, dialog.camera, reason)  # fmt: skip
        if dialog.acked:  # before the ACK the dialog is not confirmed; it just lapses
            await self._bye(dialog)
        return True

    async def close_all(self) -> None:
        """Stop every stream and hang up each dialog with a BYE (best effort)."""
        await self.playback.close_all()
        dialogs = list(self.dialogs.values())
        for dialog in dialogs:
            await self._close(dialog.call_id, "stopping")
        await asyncio.gather(*(self._bye(d) for d in dialogs if d.acked))

    async def _bye(self, dialog: Dialog) -> None:
        await send_bye(self.client.agent, dialog, 1, "the stream")
