"""H.265 in aiortc's codec tables, for the answers that need it and no one else.

aiortc negotiates only codecs listed in ``aiortc.codecs.CODECS``, and every
``RTCPeerConnection`` in the process offers that whole list. Adding H.265 there
would make every aiortc client in the process (our tests', the cascade's) offer
H.265 too. Instead the H.265 entries live in a :class:`contextvars.ContextVar`,
set only around one answer's ``setCodecPreferences`` / ``setRemoteDescription``
(:func:`offering`), and three aiortc look-ups consult it:

* ``rtcpeerconnection.find_common_codecs``: the local list matched against the
  offer also holds the scoped entries;
* ``rtcrtptransceiver.get_capabilities``: ``setCodecPreferences`` accepts them;
* ``rtcrtpsender.get_encoder``: ``video/H265`` gets :class:`H265Encoder`
  (process-wide; it only matters for a sender that negotiated H.265).

Same pattern as :mod:`gateway.relay.ice`; outside a scope aiortc behaves as shipped.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import aiortc.rtcpeerconnection as aiortc_pc
import aiortc.rtcrtpsender as aiortc_sender
import aiortc.rtcrtptransceiver as aiortc_transceiver
from aiortc import RTCRtpCodecCapability
from aiortc import codecs as aiortc_codecs
from aiortc.codecs.base import Encoder
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCapabilities,
    RTCRtpCodecParameters,
)

from gateway.relay.h265 import H265Encoder

H265_MIME = "video/H265"
CLOCK_RATE = 90000

_scoped: contextvars.ContextVar[tuple[RTCRtpCodecParameters, ...]] = contextvars.ContextVar(
    "gateway_relay_scoped_codecs", default=()
)
_find_common_codecs = aiortc_pc.find_common_codecs
_get_capabilities = aiortc_transceiver.get_capabilities
_get_encoder = aiortc_sender.get_encoder


def h265_codecs(parameters: dict[str, Any]) -> list[RTCRtpCodecParameters]:
    """Local H.265 and RTX entries carrying ``parameters`` (the offer's fmtp, echoed)."""
    used = {c.payloadType for kind in aiortc_codecs.CODECS.values() for c in kind}
    free = [pt for pt in range(96, 128) if pt not in used]
    pt, rtx_pt = free[0], free[1]  # the offer's numbers replace them in the answer
    return [
        RTCRtpCodecParameters(
            mimeType=H265_MIME,
            clockRate=CLOCK_RATE,
            payloadType=pt,
            rtcpFeedback=[
                RTCRtcpFeedback(type="nack"),
                RTCRtcpFeedback(type="nack", parameter="pli"),
                RTCRtcpFeedback(type="goog-remb"),
            ],
            parameters=dict(parameters),
        ),
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=CLOCK_RATE, payloadType=rtx_pt, parameters={"apt": pt}
        ),
    ]


def capability(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    return RTCRtpCodecCapability(
        mimeType=codec.mimeType, clockRate=codec.clockRate, parameters=dict(codec.parameters)
    )


def _scoped_find_common_codecs(
    local_codecs: list[RTCRtpCodecParameters], remote_codecs: list[RTCRtpCodecParameters]
) -> list[RTCRtpCodecParameters]:
    extra = _scoped.get()
    if extra and local_codecs is aiortc_codecs.CODECS["video"]:
        local_codecs = [*extra, *local_codecs]
    return _find_common_codecs(local_codecs, remote_codecs)


def _scoped_get_capabilities(kind: str) -> RTCRtpCapabilities:
    caps = _get_capabilities(kind)
    extra = [capability(c) for c in _scoped.get() if c.mimeType.lower() != "video/rtx"]
    if kind == "video" and extra:
        caps.codecs = [*extra, *caps.codecs]
    return caps


def _get_encoder_with_h265(codec: RTCRtpCodecParameters) -> Encoder:
    if codec.mimeType.lower() == H265_MIME.lower():
        return H265Encoder()
    return _get_encoder(codec)


def install() -> None:
    """Put the scoped look-ups in place (idempotent)."""
    aiortc_pc.find_common_codecs = _scoped_find_common_codecs
    aiortc_transceiver.get_capabilities = _scoped_get_capabilities
    aiortc_sender.get_encoder = _get_encoder_with_h265


@contextlib.contextmanager
def offering(extra: list[RTCRtpCodecParameters]) -> Iterator[None]:
    """Within this block (this task only), aiortc also negotiates the ``extra`` codecs."""
    install()
    token = _scoped.set(tuple(extra))
    try:
        yield
    finally:
        _scoped.reset(token)
