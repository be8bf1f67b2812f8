"""SOAP 1.1 for devices that speak nothing else.

ONVIF requires SOAP 1.2, and its WSDLs bind only 1.2, but older firmwares (and some
NVRs still sold) answer only SOAP 1.1: a 1.2 request gets a 1.1 ``VersionMismatch``
fault, or some other 1.1 envelope. Both our SOAP paths (onvif-zeep-async's services
through :mod:`gateway.cameras.guard`, and :class:`gateway.cameras.soap.SoapClient`)
speak 1.2 and, on such a reply, switch that camera to 1.1: the request's envelope
namespace becomes 1.1's, the action moves from the ``Content-Type`` into a
``SOAPAction`` header, and the reply is rewritten as 1.2 (1.1 faults as 1.2 faults,
``NotAuthorized`` kept) so the 1.2 parsers read it unchanged.
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from gateway.cameras import wsd

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
TER = "http://www.onvif.org/ver10/error"
MAX_REPLY_BYTES = 1024 * 1024
_ACTION = re.compile(r'action\s*=\s*"?([^";]+)"?', re.IGNORECASE)
_CODES = {"client": "Sender", "server": "Receiver", "versionmismatch": "VersionMismatch"}


class SoapVersion:
    """The SOAP version one camera speaks: 1.2 until it shows it speaks only 1.1."""

    def __init__(self) -> None:
        self.soap11 = False


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child(el: Element | None, name: str) -> Element | None:
    return next((c for c in el if _local(c.tag) == name), None) if el is not None else None


def is_soap11(content: bytes) -> bool:
    """Whether ``content`` is a SOAP 1.1 envelope (the device does not speak 1.2)."""
    if SOAP11.encode() not in content[:65536]:
        return False
    try:
        root = wsd.safe_parse(content, MAX_REPLY_BYTES)
    except wsd.WsdRejected:
        return False
    return root.tag == f"{{{SOAP11}}}Envelope"


def request_headers(headers: dict[str, str]) -> dict[str, str]:
    """SOAP 1.1 HTTP headers for a request whose 1.2 headers are ``headers``."""
    out = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "soapaction")}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    match = _ACTION.search(content_type)
    out["Content-Type"] = 'text/xml; charset="utf-8"'
    out["SOAPAction"] = f'"{match.group(1).strip()}"' if match else '""'
    return out


def request_body(data: bytes) -> bytes:
    """A SOAP 1.2 request as SOAP 1.1: only the envelope namespace differs for ONVIF."""
    return data.replace(SOAP12.encode(), SOAP11.encode())


def reply_as_soap12(content: bytes) -> bytes:
    """A SOAP 1.1 reply rewritten as SOAP 1.2; a 1.1 fault becomes the 1.2 fault."""
    root = wsd.safe_parse(content, MAX_REPLY_BYTES)
    body = _child(root, "Body")
    fault = _child(body, "Fault")
    if fault is None:
        return content.replace(SOAP11.encode(), SOAP12.encode())
    code_el = _child(fault, "faultcode")
    code = (code_el.text or "").strip() if code_el is not None else ""
    reason = _child(fault, "faultstring")
    detail = _child(fault, "detail")
    words = " ".join([code, *(detail.itertext() if detail is not None else [])])
    value = _CODES.get(code.rpartition(":")[2].strip().lower(), "Receiver")
    subcode = ""
    if "NotAuthorized" in words:
        subcode = "<s:Subcode><s:Value>ter:NotAuthorized</s:Value></s:Subcode>"
    elif code.startswith("ter:"):  # some firmwares put the ONVIF subcode here
        value = "Sender"
        subcode = f"<s:Subcode><s:Value>{escape(code)}</s:Value></s:Subcode>"
    text = (reason.text or "") if reason is not None else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="{SOAP12}" '
        f'xmlns:ter="{TER}"><s:Body><s:Fault><s:Code><s:Value>s:{value}</s:Value>{subcode}'
        f'</s:Code><s:Reason><s:Text xml:lang="en">{escape(text)}</s:Text></s:Reason>'
        "</s:Fault></s:Body></s:Envelope>"
    ).encode()
