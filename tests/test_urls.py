"""gateway.urls: the one place that rewrites a URL's host or its credentials."""

from __future__ import annotations

from gateway.urls import fix_host, strip_credentials, with_host


def test_with_host_keeps_port_path_and_credentials_unless_told() -> None:
    url = "rtsp://u:p%40@0.0.0.0:554/Streaming/101?x=1"
    assert with_host(url, "10.0.0.7") == "rtsp://u:p%40@10.0.0.7:554/Streaming/101?x=1"
    assert (
        with_host(url, "10.0.0.7", keep_userinfo=False) == "rtsp://10.0.0.7:554/Streaming/101?x=1"
    )
    assert with_host("http://[::1]:80/onvif", "fe80::2") == "http://[fe80::2]:80/onvif"


def test_fix_host_rewrites_only_a_foreign_ip_literal() -> None:
    assert fix_host("rtsp://127.0.0.1/live", "10.0.0.7") == "rtsp://10.0.0.7/live"
    assert fix_host("rtsp://cam.local/live", "10.0.0.7") == "rtsp://cam.local/live"
    assert fix_host("rtsp://10.0.0.7:8554/live", "10.0.0.7") == "rtsp://10.0.0.7:8554/live"
    assert fix_host("rtsp://1.2.3.4:99999/x", "10.0.0.7") == "rtsp://1.2.3.4:99999/x"


def test_strip_credentials_returns_them_decoded() -> None:
    assert strip_credentials("http://a%3Ab:c%40d@[::1]:8080/snap.jpg") == (
        "http://[::1]:8080/snap.jpg",
        "a:b",
        "c@d",
    )
    assert strip_credentials("http://h/x") == ("http://h/x", None, None)
