"""ONVIF PullPoint: one subscription's create, pull, renew and unsubscribe, and its messages.

Termination times are read relative to the reply's CurrentTime, so a camera
whose clock is hours off still renews on time. Topics are compared without their
namespace prefixes (``tns1:``, ``tnsaxis:``…), which vendors choose freely.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from gateway.cameras.errors import OnvifError
from gateway.cameras.soap import SoapClient, find, find_all, local, text
from gateway.urls import fix_host

TEV = "http://www.onvif.org/ver10/events/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
_TEV_ACTION = f"{TEV}/EventPortType"
_PULL_ACTION = f"{TEV}/PullPointSubscription"
# The WS-BaseNotification WSDL's actions live under bw-2, not the schema's b-2.
_MANAGER_ACTION = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager"
MAX_MESSAGES = 1000


@dataclass
class Notification:
    """One notification message: topic (without prefixes), operation, source and data items."""

    topic: str
    operation: str = "Changed"  # Initialized | Changed | Deleted
    source: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)
    utc_time: str = ""


def _time(value: str) -> float | None:
    try:
        stamp = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def remaining_s(reply: Element, default: float) -> float:
    """Seconds the subscription has left: TerminationTime − CurrentTime of the reply."""
    current = _time(text(reply, "CurrentTime"))
    terminates = _time(text(reply, "TerminationTime"))
    if current is None or terminates is None:
        return default
    return max(0.0, terminates - current)


def strip_topic(raw: str) -> str:
    """``tns1:RuleEngine/CellMotionDetector/Motion`` → ``RuleEngine/CellMotionDetector/Motion``."""
    return "/".join(part.rpartition(":")[2] for part in raw.strip().split("/"))[:256]


def _items(el: Element | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in find_all(el, "SimpleItem")[:32]:
        name = item.get("Name")
        if name:
            out[name[:64]] = (item.get("Value") or "")[:256]
    return out


def parse_notifications(reply: Element) -> list[Notification]:
    """The NotificationMessages of a PullMessages reply; malformed ones are skipped."""
    out = []
    for msg in find_all(reply, "NotificationMessage")[:MAX_MESSAGES]:
        topic = strip_topic(text(msg, "Topic"))
        body = find(msg, "Message")
        inner = (
            next((c for c in body if local(c.tag) == "Message"), None) if body is not None else None
        )
        if not topic or inner is None:
            continue
        out.append(
            Notification(
                topic=topic,
                operation=(inner.get("PropertyOperation") or "Changed")[:16],
                source=_items(find(inner, "Source")),
                data=_items(find(inner, "Data")),
                utc_time=(inner.get("UtcTime") or "")[:40],
            )
        )
    return out


class PullPoint:
    """One PullPoint subscription at a camera's events service."""

    def __init__(self, soap: SoapClient, events_url: str, *, lifetime_s: float = 60.0) -> None:
        self.soap = soap
        self.events_url = events_url
        self.lifetime_s = lifetime_s
        self.address: str | None = None
        self.expires_at = 0.0  # our monotonic clock

    def _expiry(self, reply: Element) -> None:
        self.expires_at = time.monotonic() + remaining_s(reply, self.lifetime_s)

    async def create(self) -> None:
        body = (
            f'<tev:CreatePullPointSubscription xmlns:tev="{TEV}">'
            f"<tev:InitialTerminationTime>PT{int(self.lifetime_s)}S</tev:InitialTerminationTime>"
            "</tev:CreatePullPointSubscription>"
        )
        reply = await self.soap.call(
            self.events_url, f"{_TEV_ACTION}/CreatePullPointSubscriptionRequest", body
        )
        address = text(reply, "SubscriptionReference", "Address")
        if not address.lower().startswith(("http://", "https://")):
            raise OnvifError(f"{self.soap.label}: CreatePullPointSubscription gave no address")
        # Like XAddrs, the address may name 0.0.0.0 or an inside address: use ours.
        host = urlsplit(self.events_url).hostname or ""
        self.address = fix_host(address, host) if host else address
        self._expiry(reply)

    async def pull(self, timeout_s: float, limit: int = 100) -> list[Notification]:
        """Wait up to ``timeout_s`` on the camera for messages (long poll)."""
        if self.address is None:
            raise OnvifError(f"{self.soap.label}: no subscription")
        body = (
            f'<tev:PullMessages xmlns:tev="{TEV}"><tev:Timeout>PT{max(1, int(timeout_s))}S'
            f"</tev:Timeout><tev:MessageLimit>{limit}</tev:MessageLimit></tev:PullMessages>"
        )
        reply = await self.soap.call(
            self.address, f"{_PULL_ACTION}/PullMessagesRequest", body, timeout=timeout_s
        )
        if local(reply.tag) != "PullMessagesResponse":
            raise OnvifError(f"{self.soap.label}: PullMessages: unexpected {local(reply.tag)}")
        if find(reply, "TerminationTime") is not None:
            self._expiry(reply)
        return parse_notifications(reply)

    async def renew(self) -> None:
        if self.address is None:
            raise OnvifError(f"{self.soap.label}: no subscription")
        body = (
            f'<wsnt:Renew xmlns:wsnt="{WSNT}"><wsnt:TerminationTime>PT{int(self.lifetime_s)}S'
            "</wsnt:TerminationTime></wsnt:Renew>"
        )
        reply = await self.soap.call(self.address, f"{_MANAGER_ACTION}/RenewRequest", body)
        self._expiry(reply)

    async def unsubscribe(self) -> None:
        address, self.address = self.address, None
        if address is None:
            return
        body = f'<wsnt:Unsubscribe xmlns:wsnt="{WSNT}"/>'
        await self.soap.call(address, f"{_MANAGER_ACTION}/UnsubscribeRequest", body)
