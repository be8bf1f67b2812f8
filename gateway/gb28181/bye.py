"""Our BYE inside a dialog, for live calls and for playbacks alike."""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.gb28181.sip.agent import SipAgent, SipTimeout
from gateway.gb28181.sip.message import SipMessage

log = logging.getLogger(__name__)


class DialogEnds(Protocol):
    call_id: str
    camera: str
    local: str  # our side (the INVITE's To, with our tag)
    remote: str  # the platform's side (the INVITE's From, with its tag)
    remote_target: str  # where our in-dialog requests go (the INVITE's Contact)


async def send_bye(agent: SipAgent, dialog: DialogEnds, cseq: int, what: str) -> None:
    """Hang ``dialog`` up (best effort: an unanswered BYE is logged, not raised)."""
    bye = SipMessage(method="BYE", uri=dialog.remote_target)
    bye.add("From", dialog.local)
    bye.add("To", dialog.remote)
    bye.add("Call-ID", dialog.call_id)
    bye.add("CSeq", f"{cseq} BYE")
    try:
        await agent.request(bye, timeout=min(2.0, agent.timers.b))
    except (SipTimeout, OSError) as err:
        log.info("gb28181: BYE for %s of %s unanswered: %s", what, dialog.camera, err)
