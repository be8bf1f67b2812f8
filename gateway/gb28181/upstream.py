"""One upper platform (上级平台): register with digest, refresh, keepalive, re-register
with backoff, unregister on stop; incoming requests go to the query and call handlers.

States: ``registering`` → ``online`` → (keepalive misses, 403, timeout) ``offline`` →
``registering`` again after a backoff; ``stopped`` after :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import secrets
import time
from typing import Any

from gateway.config import GbUpstream
from gateway.gb28181 import manscdp
from gateway.gb28181.calls import Calls
from gateway.gb28181.channels import ChannelDirectory
from gateway.gb28181.control import CameraControl, DeviceControl
from gateway.gb28181.media_api import MediaBackend
from gateway.gb28181.queries import Queries
from gateway.gb28181.records import RecordSource
from gateway.gb28181.sip.agent import Addr, SipAgent, SipTimeout, Timers, make_response, new_tag
from gateway.gb28181.sip.digest import authorization, parse_challenge
from gateway.gb28181.sip.message import SipMessage, SipParseError
from gateway.gb28181.subscriptions import Subscriptions

log = logging.getLogger(__name__)
BACKOFF_MAX_S = 60.0
STOP_WAIT_S = 5.0  # a stop never waits longer for the signalling task


class RegisterError(Exception):
    """The platform refused or did not answer; ``str()`` is the status page's last error."""


class UpstreamClient:
    """The lower-platform side of one GB/T 28181 upper platform."""

    def __init__(
        self,
        cfg: GbUpstream,
        *,
        directory: ChannelDirectory,
        media: MediaBackend | None,
        t1: float = 0.5,
        backoff_s: float = 1.0,
        records: RecordSource | None = None,
        cameras: CameraControl | None = None,
    ) -> None:
        self.cfg = cfg
        self.directory = directory
        self.backoff_s = backoff_s
        self.agent = SipAgent(
            transport=cfg.transport,
            remote=(cfg.host, cfg.port),
            handler=self._handle,
            local_host=cfg.local_host,
            local_port=cfg.local_port,
            timers=Timers(t1=t1, t2=max(4.0, t1 * 8)),
        )
        self.queries = Queries(self, records)
        self.calls = Calls(self, media, records)
        self.control = DeviceControl(self, cameras)
        self.subscriptions = Subscriptions(self)
        self.state = "stopped"
        self.last_error = ""
        self.last_keepalive: float | None = None
        self.registered_at: float | None = None
        self.clock_offset_s: float | None = None
        self.registrations = 0
        self._cseq = itertools.count(1)
        self._sn = itertools.count(1)
        self._call_id = secrets.token_hex(10)
        self._from_tag = new_tag()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._nonce: dict[str, str] | None = None
        self._nc = 0

    # -- addressing ------------------------------------------------------------------

    @property
    def server_uri(self) -> str:
        return f"sip:{self.cfg.server_id}@{self.cfg.domain}"

    @property
    def our_uri(self) -> str:
        return f"sip:{self.cfg.device_id}@{self.cfg.domain}"

    def next_sn(self) -> int:
        return next(self._sn)

    def _new_request(self, method: str, *, call_id: str, tag: str) -> SipMessage:
        msg = SipMessage(method=method, uri=self.server_uri)
        msg.add("From", f"<{self.our_uri}>;tag={tag}")
        msg.add("To", f"<{self.server_uri}>" if method != "REGISTER" else f"<{self.our_uri}>")
        msg.add("Call-ID", call_id)
        msg.add("CSeq", f"{next(self._cseq)} {method}")
        return msg

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.agent.start()
        self.state = "registering"
        self._task = asyncio.create_task(self._run(), name=f"gb28181-{self.cfg.id}")

    async def stop(self) -> None:
        self._stopping = True  # the loops end by themselves even if a cancel were lost
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            if not done:
                log.error("gb28181 %s: the signalling task did not stop; left behind", self.cfg.id)
            self._task = None
        await self.calls.close_all()
        await self.subscriptions.close()
        if self.state == "online":
            try:  # unregister; a platform that is gone must not hold up shutdown
                await self._register(0, timeout=min(2.0, self.agent.timers.b))
            except (RegisterError, SipTimeout, OSError) as err:
                log.info("gb28181 %s: unregister failed: %s", self.cfg.id, err)
        await self.agent.stop()
        self.state = "stopped"

    def status(self) -> dict[str, Any]:
        return {
            "id": self.cfg.id,
            "state": self.state,
            "last_error": self.last_error,
            "last_keepalive": _iso(self.last_keepalive),
            "registered_at": _iso(self.registered_at),
            "clock_offset_s": self.clock_offset_s,
            "registrations": self.registrations,
            "local_port": self.agent.local_port,
            "channels_pushed": self.queries.channels_pushed,
            "streams_playing": self.calls.playing(),
            "subscriptions": sorted(s.kind for s in self.subscriptions.subs.values()),
            "ptz_commands": self.control.done,
        }

    async def _run(self) -> None:
        backoff = self.backoff_s
        while not self._stopping:
            self.state = "registering"
            try:
                await self._register(self.cfg.expires_s)
            except (RegisterError, SipTimeout, OSError) as err:
                self._offline(str(err) or type(err).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = self.backoff_s
            self.state = "online"
            self.last_error = ""
            await self._stay_online()
            await asyncio.sleep(backoff)

    def _offline(self, why: str) -> None:
        if self.state != "offline" or why != self.last_error:
            log.warning("gb28181 %s: offline: %s", self.cfg.id, why)
        self.state = "offline"
        self.last_error = why

    async def _stay_online(self) -> None:
        """Keepalives and refreshes until the platform is lost."""
        loop = asyncio.get_running_loop()
        refresh_at = loop.time() + max(self.cfg.expires_s * 0.8, self.cfg.expires_s - 60)
        misses = 0
        while not self._stopping:
            wait = min(self.cfg.keepalive_s, max(0.0, refresh_at - loop.time()))
            await asyncio.sleep(wait)
            if loop.time() >= refresh_at:
                try:
                    await self._register(self.cfg.expires_s)
                except (RegisterError, SipTimeout, OSError) as err:
                    self._offline(f"refresh failed: {err}")
                    return
                refresh_at = loop.time() + max(self.cfg.expires_s * 0.8, self.cfg.expires_s - 60)
                continue
            if await self._keepalive():
                misses = 0
                continue
            misses += 1
            if misses >= self.cfg.keepalive_misses:
                self._offline(f"{misses} keepalives unanswered; registering again")
                return

    # -- REGISTER --------------------------------------------------------------------

    async def _register(self, expires: int, timeout: float | None = None) -> None:
        challenged = False
        auth = ""
        while True:
            msg = self._new_request("REGISTER", call_id=self._call_id, tag=self._from_tag)
            msg.uri = f"sip:{self.cfg.server_id}@{self.cfg.domain}"
            msg.add("Contact", f"<sip:{self.cfg.device_id}@{self.agent.contact_host}>")
            msg.add("Expires", str(expires))
            if auth:
                msg.add("Authorization", auth)
            resp = await self.agent.request(msg, timeout)
            if resp.status == 401 and not challenged:
                challenged = True
                auth = self._answer(resp, "REGISTER", msg.uri)
                continue
            if resp.status == 401:
                raise RegisterError("401 Unauthorized again: wrong device ID or password")
            if resp.status == 403:
                raise RegisterError(
                    f"403 {resp.reason[:60]}: refused; check the password and that"
                    " this device ID is added on the platform"
                )
            if not 200 <= resp.status < 300:
                raise RegisterError(f"{resp.status} {resp.reason[:60]}")
            if expires:
                self._registered(resp)
            return

    def _answer(self, resp: SipMessage, method: str, uri: str) -> str:
        try:
            challenge = parse_challenge(resp.get("WWW-Authenticate"))
        except SipParseError as err:
            raise RegisterError(f"unusable challenge: {err}") from None
        if self._nonce is None or self._nonce.get("nonce") != challenge.get("nonce"):
            self._nc = 0
        self._nonce = challenge
        self._nc += 1
        return authorization(
            challenge,
            method=method,
            uri=uri,
            username=self.cfg.device_id,
            password=self.cfg.password.get_secret_value(),
            nc=self._nc,
        )

    def _registered(self, resp: SipMessage) -> None:
        self.registrations += 1
        self.registered_at = time.time()
        date = resp.get("Date")
        self.clock_offset_s = None
        if date:
            try:
                parsed = email.utils.parsedate_to_datetime(date)
                self.clock_offset_s = round(parsed.timestamp() - time.time(), 1)
            except (TypeError, ValueError):
                pass
        if self.registrations == 1 or self.state != "online":
            log.info("gb28181 %s: registered to %s", self.cfg.id, self.server_uri)

    # -- MESSAGE ---------------------------------------------------------------------

    async def send_message(self, body: bytes) -> SipMessage:
        """A MANSCDP MESSAGE to the platform (answering a 401 with digest once)."""
        call_id = secrets.token_hex(10)
        tag = new_tag()
        auth = ""
        for _ in range(2):
            msg = self._new_request("MESSAGE", call_id=call_id, tag=tag)
            msg.add("Content-Type", manscdp.CONTENT_TYPE)
            if auth:
                msg.add("Authorization", auth)
            msg.body = body
            resp = await self.agent.request(msg)
            if resp.status not in (401, 407) or auth:
                return resp
            auth = self._answer(resp, "MESSAGE", msg.uri)
        return resp

    async def _keepalive(self) -> bool:
        body = manscdp.render(
            "Notify",
            [
                ("CmdType", "Keepalive"),
                ("SN", self.next_sn()),
                ("DeviceID", self.cfg.device_id),
                ("Status", "OK"),
            ],
            self.cfg.charset,
        )
        try:
            resp = await self.send_message(body)
        except (SipTimeout, OSError) as err:
            log.info("gb28181 %s: keepalive unanswered: %s", self.cfg.id, err)
            return False
        if 200 <= resp.status < 300:
            self.last_keepalive = time.time()
            return True
        log.info("gb28181 %s: keepalive answered %s", self.cfg.id, resp.status)
        return False

    # -- incoming --------------------------------------------------------------------

    async def _handle(self, req: SipMessage, addr: Addr) -> SipMessage | None:
        if req.method == "MESSAGE":
            return await self.control.handle(req) or await self.queries.handle(req)
        if req.method == "SUBSCRIBE":
            return await self.subscriptions.handle(req)
        if req.method in ("INVITE", "ACK", "BYE", "CANCEL", "INFO"):
            return await self.calls.handle(req, addr)
        if req.method == "OPTIONS":
            return make_response(req, 200, "OK", new_tag())
        resp = make_response(req, 405, "Method Not Allowed", new_tag())
        resp.add("Allow", "INVITE, ACK, BYE, CANCEL, MESSAGE, OPTIONS, INFO, SUBSCRIBE")
        return resp


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
