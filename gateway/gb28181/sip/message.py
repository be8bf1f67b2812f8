"""SIP messages (RFC 3261) for the GB/T 28181 subset: parse, build, serialise.

No SIP library on PyPI fits (the maintained ones are either servers of their own,
bindings to C stacks that are not packaged here, or unmaintained with no asyncio), so
the gateway carries a small strict user agent of its own. The parser is strict about
sizes (a hostile peer cannot make us buffer much) and lenient about header case, order
and compact forms, as platforms and cameras in the field are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_MESSAGE = 65_535  # a UDP datagram; also the largest message accepted over TCP
MAX_HEAD = 16_384  # start line + headers
MAX_HEADERS = 100
MAX_BODY = MAX_MESSAGE

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
_CANONICAL = {
    n.lower(): n
    for n in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Type",
        "Content-Length",
        "Expires",
        "User-Agent",
        "WWW-Authenticate",
        "Authorization",
        "Date",
        "Subject",
        "Allow",
        "Supported",
        "Content-Encoding",
        "X-GB-Ver",
        "Route",
        "Record-Route",
        "Event",
        "Subscription-State",
    )
}
_DIGITS = re.compile(r"^[0-9]+$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_STATUS = re.compile(r"^SIP/2\.0 ([1-6]\d\d) ?(.*)$")
_REQUEST = re.compile(r"^([A-Za-z]{1,32}) (\S{1,1024}) SIP/2\.0$")


class SipParseError(ValueError):
    """A message we refuse; ``str()`` says why (for one log line and a 400 reason)."""


def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name.strip())


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set)."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def get(self, name: str, default: str = "") -> str:
        want = canonical(name).lower()
        for n, v in self.headers:
            if n.lower() == want:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        want = canonical(name).lower()
        return [v for n, v in self.headers if n.lower() == want]

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        want = canonical(name).lower()
        self.headers = [h for h in self.headers if h[0].lower() != want]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.get("CSeq"))

    @property
    def branch(self) -> str:
        vias = self.get_all("Via")
        return via_params(vias[0]).get("branch", "") if vias else ""

    def to_bytes(self) -> bytes:
        if self.is_request:
            start = f"{self.method} {self.uri} SIP/2.0"
        else:
            start = f"SIP/2.0 {self.status} {self.reason}"
        lines = [start]
        for n, v in self.headers:
            if n.lower() != "content-length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def __str__(self) -> str:  # one short line for logs; never the Authorization value
        if self.is_request:
            return f"{self.method} {self.uri} (Call-ID {self.call_id})"
        return f"{self.status} {self.reason} (Call-ID {self.call_id})"


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not _DIGITS.match(parts[0]) or len(parts[0]) > 10:
        raise SipParseError(f"bad CSeq {value[:40]!r}")
    return int(parts[0]), parts[1].upper()


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        key, _, val = item.partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return out


def via_params(via: str) -> dict[str, str]:
    """``SIP/2.0/UDP host:port;branch=..;rport`` → params plus ``sent_by`` and ``transport``."""
    first = via.split(",")[0]
    head, _, rest = first.partition(";")
    proto, _, sent_by = head.strip().partition(" ")
    out = _params(rest)
    out["sent_by"] = sent_by.strip()
    out["transport"] = proto.rsplit("/", 1)[-1].upper()
    return out


def addr_params(value: str) -> dict[str, str]:
    """Parameters after a name-addr (``<sip:x@y>;tag=1``), e.g. ``tag``."""
    if ">" in value:
        return _params(value.split(">", 1)[1])
    _, _, rest = value.partition(";")
    return _params(rest)


def addr_uri(value: str) -> str:
    """The URI inside a name-addr: ``"A" <sip:1@2>;tag=x`` → ``sip:1@2``."""
    if "<" in value and ">" in value:
        return value.split("<", 1)[1].split(">", 1)[0].strip()
    return value.split(";", 1)[0].strip()


def uri_user(uri: str) -> str:
    """``sip:34020000001320000001@3402000000`` → the user part."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""


def _head_and_body(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")
        sep = 2
    if end < 0:
        if len(data) > MAX_HEAD:
            raise SipParseError("header section too long")
        raise SipParseError("no end of headers (truncated message)")
    if end > MAX_HEAD:
        raise SipParseError("header section too long")
    return data[:end], data[end + sep :]


def parse_head(head: bytes) -> SipMessage:
    """The start line and headers (no body yet)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # Header values are ASCII in the GB subset; a stray byte (a GBK display name)
        # is kept as latin-1 rather than refusing the whole message.
        text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():  # keep-alive CRLFs before a message
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    start = lines[0].strip()
    msg = SipMessage()
    status = _STATUS.match(start)
    if status:
        msg.status = int(status.group(1))
        msg.reason = status.group(2)[:128]
    else:
        req = _REQUEST.match(start)
        if not req:
            raise SipParseError(f"bad start line {start[:60]!r}")
        msg.method = req.group(1).upper()
        msg.uri = req.group(2)
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # folded continuation of the previous header
            if not msg.headers:
                raise SipParseError("continuation line before any header")
            n, v = msg.headers[-1]
            msg.headers[-1] = (n, f"{v} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:40]!r}")
        if len(msg.headers) >= MAX_HEADERS:
            raise SipParseError("too many headers")
        msg.headers.append((canonical(name), value.strip()))
    for needed in ("Call-ID", "CSeq", "From", "To", "Via"):
        if not msg.get(needed):
            raise SipParseError(f"missing {needed} header")
    parse_cseq(msg.get("CSeq"))
    return msg


def content_length(msg: SipMessage) -> int | None:
    raw = msg.get("Content-Length")
    if not raw:
        return None
    if not _DIGITS.match(raw) or len(raw) > 7:
        raise SipParseError(f"bad Content-Length {raw[:20]!r}")
    length = int(raw)
    if length > MAX_BODY:
        raise SipParseError(f"Content-Length {length} too large")
    return length


def parse_datagram(data: bytes) -> SipMessage:
    """One SIP message from one UDP datagram."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError("datagram too large")
    head, body = _head_and_body(data)
    msg = parse_head(head)
    length = content_length(msg)
    if length is None:
        length = len(body)  # allowed over UDP: the body is the rest
    if length > len(body):
        raise SipParseError(f"Content-Length {length} but only {len(body)} body bytes")
    msg.body = body[:length]
    return msg


class StreamFramer:
    """Cuts a TCP byte stream into messages by Content-Length (mandatory over TCP)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[SipMessage]:
        """Messages completed by ``data``; raises SipParseError (drop the connection)."""
        self._buf += data
        out: list[SipMessage] = []
        while True:
            # CRLF keep-alives (RFC 5626) between messages.
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
            if not self._buf:
                return out
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise SipParseError("header section too long")
                return out
            if end > MAX_HEAD:
                raise SipParseError("header section too long")
            msg = parse_head(bytes(self._buf[:end]))
            length = content_length(msg)
            if length is None:
                raise SipParseError("no Content-Length over a stream transport")
            total = end + 4 + length
            if len(self._buf) < total:
                return out
            msg.body = bytes(self._buf[end + 4 : total])
            del self._buf[:total]
            out.append(msg)
