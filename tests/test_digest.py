"""gateway.digest: the one digest response computation (RFC 2617 known answers)."""

from __future__ import annotations

from gateway.digest import md5_hex, response

RFC2617 = {
    "username": "Mufasa",
    "realm": "testrealm@host.com",
    "password": "Circle Of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
}


def test_qop_auth_response_matches_rfc2617_section_3_5() -> None:
    got = response(**RFC2617, qop="auth", nc="00000001", cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_response_without_qop_is_md5_of_ha1_nonce_ha2() -> None:
    ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = md5_hex("GET:/dir/index.html")
    assert response(**RFC2617) == md5_hex(f"{ha1}:{RFC2617['nonce']}:{ha2}")
    assert response(**RFC2617) != response(**{**RFC2617, "password": "circle of life"})
