"""SUBSCRIBE from the platform to ``Catalog`` and ``Alarm`` (GB/T 28181-2016 9.11, RFC 6665):
200 OK with the granted Expires and a ``Response`` body, NOTIFYs inside the dialog while the
subscription lives, refresh by a SUBSCRIBE in the dialog, end by ``Expires: 0`` (a last
NOTIFY with ``Subscription-State: terminated``) or by expiry.

What is sent (catalog changes, alarms) is decided elsewhere (:mod:`changes`,
:mod:`alarms`); :meth:`Subscriptions.deliver` carries one body to the platform: as NOTIFYs
to the live subscriptions of that kind, or, with none, as a MESSAGE (how the standard lets
a device report a change to a platform that did not subscribe).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field

from gateway.gb28181 import manscdp
from gateway.gb28181.platform import Platform
from gateway.gb28181.sip.agent import SipTimeout, make_response, new_tag
from gateway.gb28181.sip.message import SipMessage, addr_params, addr_uri

log = logging.getLogger(__name__)
KINDS = ("Catalog", "Alarm")
MIN_EXPIRES = 30
MAX_EXPIRES = 86_400
DEFAULT_EXPIRES = 3600
MAX_SUBSCRIPTIONS = 16  # per platform: a platform re-subscribing in a loop cannot grow memory


@dataclass
class Subscription:
    kind: str  # Catalog or Alarm
    call_id: str
    local: str  # our side (the SUBSCRIBE's To with our tag): the NOTIFY's From
    remote: str  # the platform's side (its From, with its tag): the NOTIFY's To
    target: str  # where NOTIFYs go (the SUBSCRIBE's Contact)
    event: str  # the Event header, echoed in every NOTIFY
    sn: str
    expires_at: float  # loop time
    cseq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    notified: int = 0
    priorities: tuple[int, int] = (1, 4)  # Alarm: StartAlarmPriority..EndAlarmPriority
    methods: frozenset[int] = frozenset()  # Alarm: AlarmMethod codes wanted (empty: all)

    def wants(self, priority: int, method: int) -> bool:
        """Whether an alarm of ``priority`` and ``method`` passes this subscription's filter."""
        low, high = self.priorities
        return low <= priority <= high and (not self.methods or method in self.methods)


def alarm_filter(query: manscdp.Query | None) -> tuple[tuple[int, int], frozenset[int]]:
    """StartAlarmPriority / EndAlarmPriority / AlarmMethod of an Alarm subscription; absent,
    0 or unreadable values mean "all" (AlarmMethod may list codes: ``1/5`` or ``15``)."""
    if query is None:
        return (1, 4), frozenset()

    def level(tag: str, default: int) -> int:
        text = (query.xml.findtext(tag) or "").strip()
        return int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= 4 else default

    low, high = level("StartAlarmPriority", 1), level("EndAlarmPriority", 4)
    raw = (query.xml.findtext("AlarmMethod") or "").strip()[:16]
    methods = frozenset(int(c) for c in raw if c.isascii() and c.isdigit() and c != "0")
    return (min(low, high), max(low, high)), methods


class Subscriptions:
    """The platform's live subscriptions, and delivery of notifications to it."""

    def __init__(self, client: Platform) -> None:
        self.client = client
        self.subs: dict[str, Subscription] = {}  # by Call-ID
        self.sent_notify = 0
        self.sent_message = 0

    def active(self, kind: str) -> list[Subscription]:
        now = asyncio.get_running_loop().time()
        for call_id in [c for c, s in self.subs.items() if s.expires_at <= now]:
            sub = self.subs.pop(call_id)
            log.info("gb28181 %s: %s subscription expired", self.client.cfg.id, sub.kind)
        return [s for s in self.subs.values() if s.kind == kind]

    async def handle(self, req: SipMessage) -> SipMessage:
        cfg = self.client.cfg
        known = self.subs.get(req.call_id)
        try:
            query = manscdp.parse(req.body, cfg.charset) if req.body.strip() else None
        except manscdp.ManscdpError as err:
            log.warning("gb28181 %s: refused a SUBSCRIBE body: %s", cfg.id, err)
            return make_response(req, 400, f"Bad MANSCDP body: {err}"[:120], new_tag())
        kind = query.cmd if query is not None else (known.kind if known else "")
        if kind not in KINDS:
            event = req.get("Event")[:40]
            log.info("gb28181 %s: SUBSCRIBE to %r not supported", cfg.id, kind or event)
            return make_response(req, 489, "Bad Event", new_tag())
        raw = req.get("Expires").strip()
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 9):
            return make_response(req, 400, "Bad Expires", new_tag())
        expires = int(raw) if raw else DEFAULT_EXPIRES
        if expires == 0:
            return await self._unsubscribe(req, known)
        expires = min(max(expires, MIN_EXPIRES), MAX_EXPIRES)
        loop = asyncio.get_running_loop()
        if known is not None:  # a refresh inside the dialog
            known.expires_at = loop.time() + expires
            resp = self._ok(req, known, expires, query)
            log.info("gb28181 %s: %s subscription refreshed (%d s)", cfg.id, kind, expires)
            return resp
        self.active(kind)  # drop the expired ones first
        if len(self.subs) >= MAX_SUBSCRIPTIONS:
            return make_response(req, 503, "Service Unavailable: too many subscriptions", new_tag())
        tag = new_tag()
        contact = req.get("Contact")
        sub = Subscription(
            kind=kind,
            call_id=req.call_id,
            local=f"<{addr_uri(req.get('To'))}>;tag={tag}",
            remote=req.get("From"),
            target=addr_uri(contact) if contact else self.client.server_uri,
            event=req.get("Event") or kind,
            sn=query.sn if query is not None else "0",
            expires_at=loop.time() + expires,
        )
        if kind == "Alarm":
            sub.priorities, sub.methods = alarm_filter(query)
        self.subs[req.call_id] = sub
        log.info("gb28181 %s: %s subscription for %d s", cfg.id, kind, expires)
        return self._ok(req, sub, expires, query)

    def _ok(
        self, req: SipMessage, sub: Subscription, expires: int, query: manscdp.Query | None
    ) -> SipMessage:
        cfg = self.client.cfg
        to_tag = addr_params(sub.local).get("tag", "")
        resp = make_response(req, 200, "OK", to_tag)
        resp.add("Expires", str(expires))
        resp.add("Contact", f"<sip:{cfg.device_id}@{self.client.agent.contact_host}>")
        if query is not None:
            resp.add("Content-Type", manscdp.CONTENT_TYPE)
            resp.body = manscdp.render(
                "Response",
                [
                    ("CmdType", sub.kind),
                    ("SN", query.sn),
                    ("DeviceID", cfg.device_id),
                    ("Result", "OK"),
                ],
                cfg.charset,
            )
        return resp

    async def _unsubscribe(self, req: SipMessage, known: Subscription | None) -> SipMessage:
        cfg = self.client.cfg
        if known is None:
            return make_response(req, 481, "Subscription Does Not Exist", new_tag())
        self.subs.pop(req.call_id, None)
        log.info("gb28181 %s: %s subscription ended by the platform", cfg.id, known.kind)
        resp = self._ok(req, known, 0, None)
        task = asyncio.create_task(self._notify(known, b"", terminated=True))
        task.add_done_callback(lambda _t: None)
        return resp

    async def _notify(self, sub: Subscription, body: bytes, *, terminated: bool = False) -> bool:
        cfg = self.client.cfg
        msg = SipMessage(method="NOTIFY", uri=sub.target)
        msg.add("From", sub.local)
        msg.add("To", sub.remote)
        msg.add("Call-ID", sub.call_id)
        msg.add("CSeq", f"{next(sub.cseq)} NOTIFY")
        msg.add("Event", sub.event)
        msg.add("Contact", f"<sip:{cfg.device_id}@{self.client.agent.contact_host}>")
        if terminated:
            msg.add("Subscription-State", "terminated")
        else:
            left = int(sub.expires_at - asyncio.get_running_loop().time())
            msg.add("Subscription-State", f"active;expires={max(left, 0)}")
        if body:
            msg.add("Content-Type", manscdp.CONTENT_TYPE)
            msg.body = body
        try:
            resp = await self.client.agent.request(msg)
        except (SipTimeout, OSError) as err:
            log.info("gb28181 %s: %s NOTIFY unanswered: %s", cfg.id, sub.kind, err)
            return False
        if resp.status == 481:  # the platform forgot it: stop notifying
            self.subs.pop(sub.call_id, None)
        if not 200 <= resp.status < 300:
            log.info("gb28181 %s: %s NOTIFY answered %s", cfg.id, sub.kind, resp.status)
            return False
        sub.notified += 1
        self.sent_notify += 1
        return True

    async def deliver(self, kind: str, body: bytes, alarm: tuple[int, int] | None = None) -> bool:
        """``body`` to the platform: NOTIFY to every live ``kind`` subscription, else a
        MESSAGE. True when at least one copy was accepted (2xx), or when the platform's
        alarm subscriptions all filter this ``alarm`` (priority, method) out."""
        subs = self.active(kind)
        if subs and alarm is not None:
            subs = [s for s in subs if s.wants(*alarm)]
            if not subs:
                return True
        if subs:
            results = await asyncio.gather(*(self._notify(s, body) for s in subs))
            return any(results)
        resp = await self.client.send_message(body)
        if 200 <= resp.status < 300:
            self.sent_message += 1
            return True
        log.info("gb28181 %s: %s MESSAGE answered %s", self.client.cfg.id, kind, resp.status)
        return False

    async def close(self) -> None:
        self.subs.clear()
