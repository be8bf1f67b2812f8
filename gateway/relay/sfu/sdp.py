"""Offer/answer bridging between a WHEP viewer and Janus's streaming plugin.

A WHEP viewer sends an offer and wants an answer (RFC 9725). Janus 1.1.2's
streaming plugin (Debian 12/13's package) only *makes* offers: ``watch`` returns
its offer, ``start`` takes the answer. Both sides' media still flows end to end
(ICE, DTLS, SRTP between viewer and Janus); the gateway only rewrites the two
SDPs so that each side gets the answer it expects:

- to the viewer: an answer on the viewer's m-lines and payload type, carrying
  Janus's ICE credentials, fingerprint, candidates and SSRC (DTLS ``passive``);
- to Janus: an answer on Janus's m-line, carrying the viewer's ICE credentials,
  fingerprint and candidates (DTLS ``active``).

Both sides think they offered, so both start ICE as controlling; RFC 8445's
role-conflict repair (487) settles it, and an ``ice-lite`` Janus never conflicts.
Janus sends RTP with its mountpoint's payload type, so the mountpoint must use
the viewer's H.264 payload type: the relay keys its mountpoints by it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


class SdpError(ValueError):
    """An SDP that cannot be bridged (the message says why)."""


@dataclass
class Media:
    kind: str
    port: str
    proto: str
    formats: list[str]
    lines: list[str] = field(default_factory=list)  # a=... lines

    def attr(self, name: str) -> str | None:
        prefix = f"a={name}:"
        for line in self.lines:
            if line.startswith(prefix):
                return line[len(prefix) :]
            if line == f"a={name}":
                return ""
        return None

    def attrs(self, name: str) -> list[str]:
        prefix = f"a={name}:"
        return [line[len(prefix) :] for line in self.lines if line.startswith(prefix)]

    @property
    def direction(self) -> str:
        for d in ("sendrecv", "sendonly", "recvonly", "inactive"):
            if f"a={d}" in self.lines:
                return d
        return "sendrecv"


@dataclass
class Sdp:
    session: list[str]
    media: list[Media]

    def attr(self, name: str, media: Media | None = None) -> str | None:
        """A media attribute, falling back to the session level."""
        if media is not None:
            value = media.attr(name)
            if value is not None:
                return value
        prefix = f"a={name}:"
        for line in self.session:
            if line.startswith(prefix):
                return line[len(prefix) :]
            if line == f"a={name}":
                return ""
        return None


def parse(text: str) -> Sdp:
    session: list[str] = []
    media: list[Media] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            bits = line[2:].split()
            if len(bits) < 4:
                raise SdpError(f"bad m-line: {line[:80]}")
            media.append(Media(bits[0], bits[1], bits[2], bits[3:]))
        elif media:
            media[-1].lines.append(line)
        else:
            session.append(line)
    if not media:
        raise SdpError("the SDP has no m-line")
    return Sdp(session, media)


@dataclass
class ViewerOffer:
    """What the bridge needs from a viewer's offer."""

    sdp: Sdp
    video: Media
    pt: int  # the viewer's H.264 payload type (packetization-mode=1)
    fmtp: str
    ufrag: str
    pwd: str
    fingerprint: str
    candidates: list[str]
    payloads: list[tuple[int, str]] = field(default_factory=list)  # every H.264 pmode 1

    @property
    def mid(self) -> str:
        return self.video.attr("mid") or "0"

    def prefer(self, existing: set[int]) -> None:
        """Take a payload type that already has a mountpoint, if the viewer offered one:
        Janus sends every viewer of a mountpoint the same payload type."""
        for pt, fmtp in self.payloads:
            if pt in existing:
                self.pt, self.fmtp = pt, fmtp
                return


def _h264_payloads(m: Media) -> list[tuple[int, str]]:
    """(payload type, fmtp) of each H.264 packetization-mode=1 format, in offer order."""
    out = []
    fmtps = {}
    for value in m.attrs("fmtp"):
        pt, _, params = value.partition(" ")
        fmtps[pt] = params
    for value in m.attrs("rtpmap"):
        pt, _, codec = value.partition(" ")
        if codec.upper().startswith("H264/90000") and pt in m.formats:
            params = fmtps.get(pt, "")
            if "packetization-mode=1" in params.replace(" ", ""):
                out.append((int(pt), params))
    return out


def _profile_idc(fmtp: str) -> str:
    for item in fmtp.split(";"):
        key, _, value = item.strip().partition("=")
        if key == "profile-level-id" and len(value) == 6:
            return value[:2].lower()
    return ""


def viewer_offer(text: str, source_plid: str | None = None) -> ViewerOffer:
    """The viewer's first receiving video m-line and its H.264 payload type.

    Prefers the format whose profile matches the camera's (``source_plid``).
    """
    sdp = parse(text)
    for m in sdp.media:
        if m.kind != "video" or m.port == "0" or m.direction not in ("recvonly", "sendrecv"):
            continue
        payloads = _h264_payloads(m)
        if not payloads:
            raise SdpError("the offer has no H.264 (packetization-mode=1) to receive")
        want = (source_plid or "")[:2].lower()
        pt, fmtp = next((p for p in payloads if want and _profile_idc(p[1]) == want), payloads[0])
        ufrag, pwd = sdp.attr("ice-ufrag", m), sdp.attr("ice-pwd", m)
        fps = [
            *m.attrs("fingerprint"),
            *(x[14:] for x in sdp.session if x.startswith("a=fingerprint:")),
        ]
        fp = next((f for f in fps if f.lower().startswith("sha-256")), fps[0] if fps else None)
        if not ufrag or not pwd or not fp:
            raise SdpError("the offer lacks ICE credentials or a DTLS fingerprint")
        return ViewerOffer(sdp, m, pt, fmtp, ufrag, pwd, fp, m.attrs("candidate"), payloads)
    raise SdpError("the offer has no video m-line to receive")


@dataclass
class JanusOffer:
    sdp: Sdp
    video: Media
    pt: int

    @property
    def mid(self) -> str:
        return self.video.attr("mid") or "v"


def janus_offer(text: str) -> JanusOffer:
    sdp = parse(text)
    for m in sdp.media:
        if m.kind == "video" and m.port != "0":
            payloads = _h264_payloads(m)
            if not payloads:
                raise SdpError("Janus offered no H.264")
            return JanusOffer(sdp, m, payloads[0][0])
    raise SdpError("Janus offered no video")


def _usable(candidate: str) -> bool:
    bits = candidate.split()
    # UDP only (Janus's TCP candidates need ice_tcp), no mDNS names (Janus ignores them).
    return len(bits) >= 8 and bits[2].lower() == "udp" and not bits[4].endswith(".local")


def answer_for_janus(viewer: ViewerOffer, janus: JanusOffer) -> str:
    """The answer Janus gets: the viewer's transport on Janus's m-line."""
    pt = janus.pt
    fmtp = next(
        (f.partition(" ")[2] for f in janus.video.attrs("fmtp") if f.startswith(f"{pt} ")), ""
    )
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(2**62)} 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {janus.mid}",
        "a=msid-semantic: WMS *",
        f"m=video 9 UDP/TLS/RTP/SAVPF {pt}",
        "c=IN IP4 0.0.0.0",
        "a=recvonly",
        f"a=mid:{janus.mid}",
        "a=rtcp-mux",
        f"a=ice-ufrag:{viewer.ufrag}",
        f"a=ice-pwd:{viewer.pwd}",
        f"a=fingerprint:{viewer.fingerprint}",
        "a=setup:active",
        f"a=rtpmap:{pt} H264/90000",
        f"a=rtcp-fb:{pt} nack",
        f"a=rtcp-fb:{pt} nack pli",
        f"a=rtcp-fb:{pt} ccm fir",
    ]
    if fmtp:
        lines.append(f"a=fmtp:{pt} {fmtp}")
    lines += [f"a=candidate:{c}" for c in viewer.candidates if _usable(c)]
    if viewer.video.attr("end-of-candidates") is not None:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def answer_for_viewer(viewer: ViewerOffer, janus: JanusOffer) -> str:
    """The answer the viewer gets: Janus's transport on the viewer's m-lines."""
    j, jm = janus.sdp, janus.video
    ufrag, pwd = j.attr("ice-ufrag", jm), j.attr("ice-pwd", jm)
    fingerprint = j.attr("fingerprint", jm)
    if not ufrag or not pwd or not fingerprint:
        raise SdpError("Janus's offer lacks ICE credentials or a fingerprint")
    lines = [
        "v=0",
        f"o=- {secrets.randbelow(2**62)} 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {viewer.mid}",
        "a=msid-semantic: WMS *",
    ]
    if j.attr("ice-lite") is not None:
        lines.append("a=ice-lite")
    pt = viewer.pt
    for m in viewer.sdp.media:
        mid = m.attr("mid") or "0"
        if m is not viewer.video:
            # Audio, data and extra video: refused (port 0), as RFC 3264 wants them kept.
            lines += [f"m={m.kind} 0 {m.proto} {m.formats[0]}", "c=IN IP4 0.0.0.0"]
            lines += [f"a=mid:{mid}", "a=inactive"]
            continue
        lines += [
            f"m=video 9 UDP/TLS/RTP/SAVPF {pt}",
            "c=IN IP4 0.0.0.0",
            "a=sendonly",
            f"a=mid:{mid}",
            "a=rtcp-mux",
            f"a=ice-ufrag:{ufrag}",
            f"a=ice-pwd:{pwd}",
            f"a=fingerprint:{fingerprint}",
            "a=setup:passive",
            f"a=rtpmap:{pt} H264/90000",
            f"a=rtcp-fb:{pt} nack",
            f"a=rtcp-fb:{pt} nack pli",
            f"a=rtcp-fb:{pt} ccm fir",
            f"a=fmtp:{pt} {viewer.fmtp}",
        ]
        msid = jm.attr("msid")
        if msid:
            lines.append(f"a=msid:{msid}")
        ssrcs = [s for s in jm.attrs("ssrc")]
        groups = jm.attrs("ssrc-group")
        main = next((g.split()[1] for g in groups if g.startswith("FID ")), None)
        for s in ssrcs:  # only the media SSRC: the viewer got no RTX payload type
            if main is None or s.startswith(f"{main} "):
                lines.append(f"a=ssrc:{s}")
        lines += [f"a=candidate:{c}" for c in jm.attrs("candidate") if _usable(c)]
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def candidates_from_frag(frag: str) -> tuple[str | None, list[str], bool]:
    """(ufrag, candidate values, end-of-candidates) of a trickle-ice-sdpfrag body."""
    ufrag = None
    out: list[str] = []
    end = False
    for raw in frag.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line[12:]
        elif line.startswith("a=candidate:"):
            out.append(line[12:])
        elif line == "a=end-of-candidates":
            end = True
    return ufrag, out, end
