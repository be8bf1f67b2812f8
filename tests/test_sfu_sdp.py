"""The offer/answer bridge between a WHEP viewer and Janus's streaming plugin, and the
``relay.sfu`` settings (no processes: SDP text and the settings model)."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_settings
from gateway.relay.sfu import sdp

VIEWER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE a0 v1",
        "a=fingerprint:sha-256 AA:BB",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=mid:a0",
        "a=recvonly",
        "a=rtpmap:111 opus/48000/2",
        "a=ice-ufrag:vu",
        "a=ice-pwd:viewerpassword0123456789",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 102 103 127",
        "a=mid:v1",
        "a=recvonly",
        "a=ice-ufrag:vu",
        "a=ice-pwd:viewerpassword0123456789",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:102 H264/90000",
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f",
        "a=rtpmap:103 H264/90000",
        "a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:127 H264/90000",
        "a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032",
        "a=candidate:1 1 udp 2122260223 192.0.2.10 50000 typ host",
        "a=candidate:2 1 udp 2122260223 abcd.local 50001 typ host",
        "a=candidate:3 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active",
        "",
    ]
)

JANUS = "\r\n".join(
    [
        "v=0",
        "o=- 2 1 IN IP4 192.0.2.2",
        "s=Mountpoint 7",
        "t=0 0",
        "a=group:BUNDLE v",
        "a=fingerprint:sha-256 CC:DD",
        "m=video 9 UDP/TLS/RTP/SAVPF 103 104",
        "a=sendonly",
        "a=mid:v",
        "a=ice-ufrag:ju",
        "a=ice-pwd:januspassword0123456789",
        "a=setup:actpass",
        "a=rtpmap:103 H264/90000",
        "a=fmtp:103 profile-level-id=42e01f;packetization-mode=1",
        "a=rtpmap:104 rtx/90000",
        "a=fmtp:104 apt=103",
        "a=ssrc-group:FID 1111 2222",
        "a=msid:janus janusv",
        "a=ssrc:1111 cname:janus",
        "a=ssrc:2222 cname:janus",
        "a=candidate:1 1 udp 2015363327 192.0.2.2 40000 typ host",
        "a=end-of-candidates",
        "",
    ]
)


def test_viewer_offer_picks_packetization_mode_1_matching_the_camera_profile() -> None:
    assert sdp.viewer_offer(VIEWER).pt == 103  # first packetization-mode=1 entry
    high = sdp.viewer_offer(VIEWER, source_plid="640028")
    assert (high.pt, high.mid, high.ufrag) == (127, "v1", "vu")
    assert high.fingerprint == "sha-256 AA:BB"  # from the session level


def test_viewer_takes_a_payload_type_that_already_has_a_mountpoint() -> None:
    offer = sdp.viewer_offer(VIEWER)
    offer.prefer({127, 99})
    assert offer.pt == 127 and "640032" in offer.fmtp
    offer.prefer({99})  # not offered: unchanged
    assert offer.pt == 127


def test_answer_for_the_viewer_carries_janus_transport_on_the_viewers_lines() -> None:
    viewer, janus = sdp.viewer_offer(VIEWER), sdp.janus_offer(JANUS)
    answer = sdp.parse(sdp.answer_for_viewer(viewer, janus))
    audio, video = answer.media
    assert (audio.kind, audio.port, audio.attr("mid")) == ("audio", "0", "a0")  # refused
    assert video.formats == ["103"] and video.direction == "sendonly"
    assert video.attr("mid") == "v1" and "a=group:BUNDLE v1" in answer.session
    assert (video.attr("ice-ufrag"), video.attr("setup")) == ("ju", "passive")
    assert video.attr("fingerprint") == "sha-256 CC:DD"
    assert video.attrs("ssrc") == ["1111 cname:janus"]  # no RTX SSRC: no RTX negotiated
    assert video.attrs("candidate") == ["1 1 udp 2015363327 192.0.2.2 40000 typ host"]


def test_answer_for_janus_carries_the_viewers_transport_on_janus_line() -> None:
    viewer, janus = sdp.viewer_offer(VIEWER), sdp.janus_offer(JANUS)
    answer = sdp.parse(sdp.answer_for_janus(viewer, janus))
    (video,) = answer.media
    assert video.formats == ["103"] and video.direction == "recvonly"
    assert (video.attr("mid"), video.attr("setup")) == ("v", "active")
    assert (video.attr("ice-ufrag"), video.attr("ice-pwd")) == ("vu", "viewerpassword0123456789")
    assert video.attr("fingerprint") == "sha-256 AA:BB"
    # UDP only, no mDNS names: Janus ignores both.
    assert video.attrs("candidate") == ["1 1 udp 2122260223 192.0.2.10 50000 typ host"]


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        (VIEWER.replace("H264", "H265"), "no H.264"),
        (VIEWER.replace("m=video", "m=text"), "no video"),
        ("v=0\r\n", "no m-line"),
        (VIEWER.replace("a=ice-pwd:viewerpassword0123456789\r\n", ""), "ICE credentials"),
    ],
)
def test_offers_that_cannot_be_bridged_say_why(offer: str, reason: str) -> None:
    with pytest.raises(sdp.SdpError, match=reason):
        sdp.viewer_offer(offer)


def test_trickle_fragment_candidates() -> None:
    frag = "a=ice-ufrag:vu\r\na=ice-pwd:x\r\nm=video 9 UDP 0\r\na=mid:v1\r\n"
    frag += "a=candidate:9 1 udp 1 192.0.2.10 50002 typ host\r\na=end-of-candidates\r\n"
    assert sdp.candidates_from_frag(frag) == (
        "vu",
        ["9 1 udp 1 192.0.2.10 50002 typ host"],
        True,
    )


def test_sfu_settings_validate_and_keep_secrets_secret() -> None:
    settings = parse_settings(
        {
            "relay": {
                "sfu": {
                    "url": "http://10.0.0.5:8088/janus",
                    "api_secret": "top-secret-1",
                    "admin_key": "top-secret-2",
                }
            }
        }
    )
    sfu = settings.relay.sfu
    assert sfu is not None and sfu.request_timeout_s == 5
    dumped = settings.model_dump_json()
    assert "top-secret-1" not in dumped and "top-secret-2" not in dumped
    with pytest.raises(ConfigError, match=r"relay\.sfu\.url"):
        parse_settings({"relay": {"sfu": {"url": "janus.example:8088"}}})
    with pytest.raises(ConfigError, match=r"relay\.sfu\.request_timeout_s"):
        parse_settings({"relay": {"sfu": {"url": "http://j/janus", "request_timeout_s": 0}}})
