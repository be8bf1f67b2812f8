"""WHEP negotiation on aiortc: check an offer, force H.264, answer with candidates.

WHEP (draft-ietf-wish-whep, built on WHIP, RFC 9725): the viewer POSTs an SDP
offer; we answer once ICE gathering is complete (aiortc does not trickle its own
candidates), so the answer carries every candidate we have.

H.264 is forced with ``setCodecPreferences`` before ``setRemoteDescription``;
otherwise VP8 may win and H.264 bytes would be sent as VP8. We prefer the offered
H.264 entry whose profile matches the source (read from the SPS), so a WHEP player
that honours ``profile-level-id`` is told what it will get; Chrome decodes any.
aiortc ships only Baseline and Constrained Baseline entries, so entries for the
other profiles are added to its codec table on first use.

H.265 (RFC 7798) is answered when the source is H.265 and the offer has it (Chrome
and Edge with hardware decoding, Safari, GStreamer): the offered entry with the
source's ``profile-id`` is echoed, and :mod:`gateway.relay.codecs` makes aiortc
negotiate it for this answer only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpCodecCapability, RTCSessionDescription
from aiortc import codecs as aiortc_codecs
from aiortc import sdp as aiortc_sdp
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

# relay/sessions.py asks for these through this module (its rewrite is under way elsewhere).
from gateway.media.h264 import profile_level_id as profile_level_id_from_annexb  # noqa: F401
from gateway.media.h265 import profile_idc as h265_profile_from_annexb  # noqa: F401
from gateway.relay import codecs, dtls
from gateway.relay.ice import host_addresses

log = logging.getLogger(__name__)

H264_PM1_DEFAULT = "42e01f"  # constrained baseline 3.1: every WebRTC stack offers it


class OfferError(ValueError):
    """The offer cannot be answered; the message says why, for the HTTP 400 body."""


@dataclass(frozen=True)
class OfferCodec:
    payload_type: int
    profile_level_id: str


def _h264_profile(plid: str) -> aiortc_sdp.H264Profile | None:
    try:
        return aiortc_sdp.parse_h264_profile_level_id(plid)[0]
    except (ValueError, TypeError):
        return None


def strip_mdns_candidates(sdp_text: str) -> str:
    """Drop ``.local`` (mDNS) candidates.

    Resolving them makes aioice multicast on every interface. Browsers still reach
    us: their checks to our host candidates arrive from their real address and
    become peer-reflexive candidates.
    """
    kept = [ln for ln in sdp_text.splitlines() if not _is_mdns_candidate(ln)]
    return "\r\n".join(kept) + "\r\n"


def _is_mdns_candidate(line: str) -> bool:
    bits = line.split()
    return line.startswith("a=candidate:") and len(bits) > 4 and bits[4].endswith(".local")


def parse_offer(text: str) -> tuple[aiortc_sdp.SessionDescription, list[OfferCodec]]:
    """Parse and check a WHEP offer; the H.264 packetization-mode=1 entries it offers."""
    if not text.strip():
        raise OfferError("empty body: expected an SDP offer (Content-Type: application/sdp)")
    if not text.lstrip().startswith("v=0"):
        raise OfferError("not an SDP offer: the body must start with 'v=0'")
    try:
        desc = aiortc_sdp.SessionDescription.parse(text)
    except Exception as err:  # aiortc's parser raises many kinds on hostile input
        raise OfferError(f"cannot parse the SDP offer: {err or type(err).__name__}") from None
    videos = [m for m in desc.media if m.kind == "video"]
    if not videos:
        raise OfferError("the offer has no video m-line (m=video)")
    video = videos[0]
    if video.direction not in (None, "recvonly", "sendrecv"):
        raise OfferError(f"the offer's video is {video.direction}; WHEP needs recvonly")
    if not (video.ice and video.ice.usernameFragment and video.ice.password):
        raise OfferError("the offer lacks ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not (video.dtls and video.dtls.fingerprints):
        raise OfferError("the offer lacks a DTLS fingerprint (a=fingerprint)")
    h264 = [
        OfferCodec(c.payloadType, str(c.parameters.get("profile-level-id", H264_PM1_DEFAULT)))
        for c in video.rtp.codecs
        if c.payloadType is not None
        and c.mimeType.lower() == "video/h264"
        and str(c.parameters.get("packetization-mode", "0")) == "1"
    ]
    if not h264 and not offered_h265(desc):
        raise OfferError(
            "the offer has neither H.264 with packetization-mode=1 nor H.265;"
            " this relay sends those"
        )
    return desc, h264


def offered_h265(desc: aiortc_sdp.SessionDescription) -> list[dict[str, Any]]:
    """The fmtp parameters of each H.265 entry of the offer's video, in its order."""
    video = next((m for m in desc.media if m.kind == "video"), None)
    if video is None:
        return []
    return [dict(c.parameters) for c in video.rtp.codecs if c.mimeType.lower() == "video/h265"]


def choose_h265(offered: list[dict[str, Any]], source_profile: int | None) -> dict[str, Any]:
    """The offered H.265 entry to answer: the source's profile-id if offered, else the first."""
    for params in offered:
        if source_profile is not None and int(params.get("profile-id", 1)) == source_profile:
            return params
    return offered[0]


def _local_h264() -> list[RTCRtpCodecParameters]:
    return [c for c in aiortc_codecs.CODECS["video"] if c.mimeType.lower() == "video/h264"]


def _ensure_local_codec(plid: str) -> RTCRtpCodecParameters | None:
    """aiortc's own H.264 entry for ``plid``'s profile, added (with RTX) if missing."""
    profile = _h264_profile(plid)
    if profile is None:
        return None
    for codec in _local_h264():
        if _h264_profile(str(codec.parameters.get("profile-level-id"))) == profile:
            return codec
    video = aiortc_codecs.CODECS["video"]
    used = {c.payloadType for kind in aiortc_codecs.CODECS.values() for c in kind}
    free = [pt for pt in range(96, 128) if pt not in used]
    if len(free) < 2:
        return None
    pt, rtx_pt = free[0], free[1]
    codec = RTCRtpCodecParameters(
        mimeType="video/H264",
        clockRate=90000,
        payloadType=pt,
        rtcpFeedback=[
            RTCRtcpFeedback(type="nack"),
            RTCRtcpFeedback(type="nack", parameter="pli"),
            RTCRtcpFeedback(type="goog-remb"),
        ],
        parameters={
            "level-asymmetry-allowed": "1",
            "packetization-mode": "1",
            "profile-level-id": plid.lower(),
        },
    )
    video.append(codec)
    video.append(
        RTCRtpCodecParameters(
            mimeType="video/rtx", clockRate=90000, payloadType=rtx_pt, parameters={"apt": pt}
        )
    )
    log.debug("registered H.264 profile-level-id %s with aiortc (pt %s)", plid, pt)
    return codec


def _capability(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    return RTCRtpCodecCapability(
        mimeType=codec.mimeType, clockRate=codec.clockRate, parameters=dict(codec.parameters)
    )


def codec_preferences(
    offered: list[OfferCodec], source_plid: str | None, camera_id: str = ""
) -> list[RTCRtpCodecCapability]:
    """H.264 entries in preference order (source's profile first), then RTX."""
    source_profile = _h264_profile(source_plid) if source_plid else None
    ordered = sorted(
        offered, key=lambda c: 0 if _h264_profile(c.profile_level_id) == source_profile else 1
    )
    if source_profile is not None and _h264_profile(ordered[0].profile_level_id) != source_profile:
        log.warning(
            "%s: source profile-level-id %s not offered by the viewer; sending it anyway",
            camera_id,
            source_plid,
        )
    prefs: list[RTCRtpCodecCapability] = []
    for offer_codec in ordered:
        local = _ensure_local_codec(offer_codec.profile_level_id)
        if local is not None:
            cap = _capability(local)
            if cap not in prefs:
                prefs.append(cap)
    if not prefs:
        raise OfferError(
            "the offer has no usable H.264 (packetization-mode=1) and this stream is H.264"
        )
    prefs.append(RTCRtpCodecCapability(mimeType="video/rtx", clockRate=90000))
    return prefs


async def answer(
    pc: RTCPeerConnection,
    track: object,
    offer_sdp: str,
    *,
    source_plid: str | None,
    addresses: list[str] | None,
    resolve_mdns: bool = False,
    camera_id: str = "",
    h265_profile: int | None = None,
) -> str:
    """Attach ``track`` to ``pc``, answer ``offer_sdp`` and return the answer SDP.

    The answer is H.265 when ``h265_profile`` is given (the source is H.265: its
    ``general_profile_idc``, 0 when unknown), else H.264. Gathers our candidates before
    returning, restricted to ``addresses`` when given. Raises :class:`OfferError`
    for offers aiortc refuses.
    """
    if not resolve_mdns:
        offer_sdp = strip_mdns_candidates(offer_sdp)
    desc, offered = parse_offer(offer_sdp)
    extra: list[RTCRtpCodecParameters] = []
    if h265_profile is not None:
        h265 = offered_h265(desc)
        if not h265:
            raise OfferError("the offer has no H.265 and this stream is H.265")
        extra = codecs.h265_codecs(choose_h265(h265, h265_profile or None))
        prefs = [codecs.capability(extra[0]), RTCRtpCodecCapability("video/rtx", 90000)]
    else:
        prefs = codec_preferences(offered, source_plid, camera_id)
    transceiver = pc.addTransceiver(track, direction="sendonly")  # type: ignore[arg-type]
    try:
        with codecs.offering(extra):
            transceiver.setCodecPreferences(prefs)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        dtls.prefer_server_role(pc, desc)
        local = await pc.createAnswer()
    except Exception as err:  # ValueError / OperationError / InvalidStateError from aiortc
        raise OfferError(f"the offer was refused: {err or type(err).__name__}") from None
    with host_addresses(addresses):
        await pc.setLocalDescription(local)
    sent = pc.localDescription
    if "a=candidate:" not in sent.sdp:
        log.warning("%s: the answer has no ICE candidate; check relay.interfaces", camera_id)
    return sent.sdp


def parse_sdpfrag(text: str) -> tuple[str | None, str | None, list[tuple[str | None, str]], bool]:
    """A trickle-ice-sdpfrag: (ice-ufrag, ice-pwd, [(mid, candidate line)], end-of-candidates).

    The ufrag/pwd are the last seen; candidates carry the ``a=mid`` they follow.
    """
    ufrag = pwd = mid = None
    candidates: list[tuple[str | None, str]] = []
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append((mid, line[len("a=candidate:") :]))
        elif line == "a=end-of-candidates":
            end = True
    return ufrag, pwd, candidates, end
