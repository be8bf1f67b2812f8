"""SOAP 1.2 plumbing for the simulated camera: safe parsing, envelopes, faults, WS-Security.

Requests are parsed by lxml with entity resolution, network access and huge
trees off, and any document carrying a DTD is refused outright, so neither XXE
nor entity expansion ("billion laughs") can reach the simulator.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TT = "http://www.onvif.org/ver10/schema"
TER = "http://www.onvif.org/ver10/error"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
WSA = "http://www.w3.org/2005/08/addressing"
TEV = "http://www.onvif.org/ver10/events/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
TNS1 = "http://www.onvif.org/ver10/topics"
TR2 = "http://www.onvif.org/ver20/media/wsdl"
PASSWORD_DIGEST = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordDigest"
)

NSMAP_DECL = (
    f'xmlns:env="{ENV}" xmlns:tds="{TDS}" xmlns:trt="{TRT}" xmlns:tptz="{TPTZ}" '
    f'xmlns:tt="{TT}" xmlns:ter="{TER}" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}" xmlns:wsa="{WSA}" '
    f'xmlns:tev="{TEV}" xmlns:wsnt="{WSNT}" xmlns:tns1="{TNS1}" xmlns:tr2="{TR2}"'
)

# Replayed nonces are refused for as long as a Created stamp would be accepted.
AUTH_WINDOW_S = 300.0
_NONCE_CACHE_SIZE = 4096


def x(value: object) -> str:
    """Text escaped for an XML element body."""
    return escape(str(value))


def xa(value: object) -> str:
    """A quoted, escaped XML attribute value."""
    return quoteattr(str(value))


def xbool(value: bool) -> str:
    return "true" if value else "false"


class SoapFault(Exception):
    """A fault to send back: code ``Sender``/``Receiver`` and ONVIF ``ter:`` subcodes.

    ``subcode`` is one QName or several separated by spaces, outermost first.
    """

    def __init__(
        self,
        code: str,
        subcode: str,
        reason: str,
        http_status: int | None = None,
        version: str = "1.2",
    ):
        super().__init__(reason)
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.version = version  # of the envelope it goes back in
        # SOAP 1.2 HTTP binding: sender faults are 400, all others 500 (1.1: all 500).
        self.http_status = http_status or (400 if code == "Sender" else 500)

    def envelope(self) -> bytes:
        if self.version == "1.1":
            # SOAP 1.1 has faultcode/faultstring; the ONVIF subcodes go in the detail.
            code = {"Sender": "Client", "Receiver": "Server"}.get(self.code, self.code)
            return envelope(
                f"<env:Fault><faultcode>env:{x(code)}</faultcode>"
                f"<faultstring>{x(self.reason)}</faultstring>"
                f"<detail><ter:Subcodes>{x(self.subcode)}</ter:Subcodes></detail></env:Fault>",
                "1.1",
            )
        # "ter:InvalidArgVal ter:NoProfile" nests as Subcode/Value + Subcode/Subcode/Value.
        sub = ""
        for value in reversed(self.subcode.split()):
            sub = f"<env:Subcode><env:Value>{x(value)}</env:Value>{sub}</env:Subcode>"
        return envelope(
            f"<env:Fault><env:Code><env:Value>env:{self.code}</env:Value>{sub}</env:Code>"
            f'<env:Reason><env:Text xml:lang="en">{x(self.reason)}</env:Text></env:Reason>'
            "</env:Fault>"
        )


def not_authorized(reason: str = "Sender not authorized") -> SoapFault:
    return SoapFault("Sender", "ter:NotAuthorized", reason)


def envelope(body: str, version: str = "1.2") -> bytes:
    """A SOAP 1.2 (or 1.1) envelope around ``body`` (markup already escaped)."""
    decl = NSMAP_DECL if version != "1.1" else NSMAP_DECL.replace(ENV, SOAP11_ENV)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<env:Envelope {decl}>'
        f"<env:Header/><env:Body>{body}</env:Body></env:Envelope>"
    ).encode()


def request_version(body: bytes, accepted: str) -> str:
    """The SOAP version to answer ``body`` in, for a camera that answers ``accepted``
    ("1.2", "1.1" or "both")."""
    if accepted == "1.1" or (accepted == "both" and SOAP11_ENV.encode() in body[:4096]):
        return "1.1"
    return "1.2"


_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_comments=True,
    remove_pis=True,
)


def parse_request(
    body: bytes, accepted: str = "1.2"
) -> tuple[etree._Element | None, etree._Element]:
    """The SOAP Header (or None) and the operation element of a request body.

    ``accepted``: the SOAP versions the camera answers ("1.2", "1.1" or "both").
    """
    if not body.strip():
        raise SoapFault("Sender", "ter:InvalidArgVal", "empty request body")
    # A quick refusal before parsing; the DOCTYPE check after parsing covers
    # encodings where the marker is not visible as ASCII.
    upper = body.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise SoapFault("Sender", "ter:InvalidArgVal", "DTDs are not allowed")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as err:
        raise SoapFault("Sender", "ter:InvalidArgVal", f"malformed XML: {err}") from None
    if root.getroottree().docinfo.doctype:
        raise SoapFault("Sender", "ter:InvalidArgVal", "DTDs are not allowed")
    if root.tag == f"{{{SOAP11_ENV}}}Envelope" and accepted == "1.2":
        raise SoapFault("VersionMismatch", "ter:WrongSOAPVersion", "SOAP 1.2 is required", 500)
    if root.tag == f"{{{ENV}}}Envelope" and accepted == "1.1":
        raise SoapFault(
            "VersionMismatch", "ter:WrongSOAPVersion", "SOAP 1.1 is required", 500, "1.1"
        )
    ns = SOAP11_ENV if root.tag == f"{{{SOAP11_ENV}}}Envelope" else ENV
    if root.tag != f"{{{ns}}}Envelope":
        raise SoapFault("Sender", "ter:InvalidArgVal", "not a SOAP envelope")
    header = root.find(f"{{{ns}}}Header")
    body_el = root.find(f"{{{ns}}}Body")
    operation = None if body_el is None else next(iter(body_el.iterchildren("*")), None)
    if operation is None:
        raise SoapFault("Sender", "ter:InvalidArgVal", "empty SOAP Body")
    return header, operation


def _parse_created(text: str) -> float:
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    stamp = dt.datetime.fromisoformat(value)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


@dataclass
class UsernameToken:
    username: str
    password: str
    digest: bool
    nonce: bytes
    created: str | None


def find_username_token(header: etree._Element | None) -> UsernameToken | None:
    """The WS-Security UsernameToken in a SOAP header, or None when there is none."""
    if header is None:
        return None
    token = header.find(f"{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return None
    password_el = token.find(f"{{{WSSE}}}Password")
    nonce_el = token.find(f"{{{WSSE}}}Nonce")
    created_el = token.find(f"{{{WSU}}}Created")
    if created_el is None:  # some clients put Created in the wsse namespace
        created_el = token.find(f"{{{WSSE}}}Created")
    try:
        nonce = base64.b64decode(
            (nonce_el.text or "") if nonce_el is not None else "", validate=True
        )
    except (binascii.Error, ValueError):
        raise not_authorized("Nonce is not valid Base64") from None
    password_type = password_el.get("Type", "") if password_el is not None else ""
    return UsernameToken(
        username=(token.findtext(f"{{{WSSE}}}Username") or "").strip(),
        password=(password_el.text or "") if password_el is not None else "",
        digest=password_type.endswith("#PasswordDigest"),
        nonce=nonce,
        created=created_el.text if created_el is not None else None,
    )


class WsSecurityChecker:
    """Checks UsernameTokens for one camera: digest or text, freshness, no replayed nonce."""

    def __init__(self, window_s: float = AUTH_WINDOW_S) -> None:
        self.window_s = window_s
        self._nonces: OrderedDict[bytes, float] = OrderedDict()

    def check(self, token: UsernameToken, username: str, password: str, clock_offset_s: float):
        """Raise a NotAuthorized fault unless ``token`` proves ``username``/``password``."""
        ok_user = hmac.compare_digest(token.username.encode(), username.encode())
        if token.digest:
            if token.created is None:
                raise not_authorized("PasswordDigest needs a Created stamp")
            material = token.nonce + token.created.encode() + password.encode()
            expected = base64.b64encode(hashlib.sha1(material).digest()).decode()
            ok_pass = hmac.compare_digest(token.password.strip().encode(), expected.encode())
        else:
            ok_pass = hmac.compare_digest(token.password.encode(), password.encode())
        if not (ok_user and ok_pass):
            raise not_authorized("Wrong username or password")
        if token.created is not None:
            try:
                created = _parse_created(token.created)
            except ValueError:
                raise not_authorized("Created is not an xs:dateTime") from None
            # Compare with the camera's own clock, as a real camera does; a
            # client that ignores the clock offset is refused here.
            if abs(created - (time.time() + clock_offset_s)) > self.window_s:
                raise not_authorized("Created is outside the accepted time window")
        if token.nonce:
            self._remember_nonce(token.nonce)

    def _remember_nonce(self, nonce: bytes) -> None:
        now = time.monotonic()
        while self._nonces and next(iter(self._nonces.values())) < now - self.window_s:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            raise not_authorized("Nonce was already used")
        self._nonces[nonce] = now
        if len(self._nonces) > _NONCE_CACHE_SIZE:
            self._nonces.popitem(last=False)


def text_of(element: etree._Element, *path: str) -> str | None:
    """Text of a descendant found by local names (namespace-agnostic), or None."""
    node = child(element, *path)
    return None if node is None else (node.text or "").strip()


def child(element: etree._Element, *path: str) -> etree._Element | None:
    """A descendant found by local names (namespace-agnostic), or None."""
    node: etree._Element | None = element
    for name in path:
        if node is None:
            return None
        node = next((c for c in node.iterchildren("*") if etree.QName(c).localname == name), None)
    return node


def utc_datetime_xml(stamp: float) -> str:
    """A tt:DateTime (Time then Date, as the schema orders them) for a Unix time."""
    t = dt.datetime.fromtimestamp(stamp, dt.UTC)
    return (
        f"<tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
        f"<tt:Second>{t.second}</tt:Second></tt:Time>"
        f"<tt:Date><tt:Year>{t.year}</tt:Year><tt:Month>{t.month}</tt:Month>"
        f"<tt:Day>{t.day}</tt:Day></tt:Date>"
    )
