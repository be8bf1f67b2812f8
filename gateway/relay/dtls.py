"""DTLS that WebRTC peers other than browsers can finish: role and cipher suites.

aiortc answers every offer with ``a=setup:active`` (it becomes the DTLS client) and
offers only ``ECDHE-ECDSA`` cipher suites, because its own certificate is ECDSA.
A DTLS server whose certificate is RSA — GStreamer's ``webrtcbin`` (1.22 generates
RSA 2048) — finds no suite it can serve and the handshake ends in "no shared
cipher" after ICE succeeded. Two independent fixes, both applied:

* :func:`prefer_server_role`: when the offer says ``actpass`` we answer
  ``a=setup:passive`` and act as the DTLS server. The viewer then picks among *our*
  suites for *our* certificate, whatever certificate it has. Browsers accept this
  as well (RFC 8842 allows either answer).
* :func:`install`: the cipher list also names ``ECDHE-RSA`` suites, so when a peer
  insists on being the server (``a=setup:passive`` in its offer) an RSA certificate
  works too. As a server with an ECDSA certificate OpenSSL never picks them.
"""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCPeerConnection
from aiortc import sdp as aiortc_sdp
from aiortc.rtcdtlstransport import RTCCertificate
from OpenSSL import SSL

log = logging.getLogger(__name__)

CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
    b"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"
)

_original = RTCCertificate._create_ssl_context


def _create_ssl_context(self: RTCCertificate, srtp_profiles: list[Any]) -> SSL.Context:
    ctx = _original(self, srtp_profiles)
    ctx.set_cipher_list(CIPHERS)
    return ctx


def install() -> None:
    """Widen aiortc's DTLS cipher list to ECDSA and RSA peers (idempotent)."""
    if RTCCertificate._create_ssl_context is not _create_ssl_context:
        RTCCertificate._create_ssl_context = _create_ssl_context  # type: ignore[method-assign]


def prefer_server_role(pc: RTCPeerConnection, offer: aiortc_sdp.SessionDescription) -> int:
    """After ``setRemoteDescription(offer)``: be the DTLS server where the offer lets
    us choose (``actpass``). Returns how many transports were switched.

    aiortc reads the role back from the transport in ``createAnswer``, so the answer
    then says ``a=setup:passive``.
    """
    desc = offer
    roles = {m.rtp.muxId: (m.dtls.role if m.dtls else None) for m in desc.media}
    switched = 0
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if roles.get(transceiver.mid or "") == "auto" and transport._role == "auto":
            transport._set_role("server")
            switched += 1
    return switched
