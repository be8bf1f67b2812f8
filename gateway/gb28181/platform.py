"""What the dialog handlers (``calls``, ``queries``) need of the registration to one
upper platform: a small Protocol, so they depend on it and not on ``upstream`` (which
builds them), and the package has no import circle."""

from __future__ import annotations

from typing import Protocol

from gateway.config import GbUpstream
from gateway.gb28181.channels import ChannelDirectory
from gateway.gb28181.sip.agent import SipAgent
from gateway.gb28181.sip.message import SipMessage


class Platform(Protocol):
    cfg: GbUpstream
    directory: ChannelDirectory
    agent: SipAgent

    @property
    def server_uri(self) -> str: ...

    async def send_message(self, body: bytes) -> SipMessage: ...
