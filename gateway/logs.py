"""Logging set-up: plain or JSON lines, with secrets redacted from every record."""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# rtsp://user:pass@host → rtsp://user:***@host ; password=... / "password": "..."
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@")
_KV_SECRET = re.compile(
    r"(?P<key>(?:password|passwd|pwd|token|secret|credential|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:bearer\s+)?[^\s\"',&}]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Remove credentials from URLs and key=value pairs in free text."""
    text = _URL_CREDS.sub(r"\g<scheme>\g<user>:***@", text)
    return _KV_SECRET.sub(r"\g<key>***", text)


class RedactingFilter(logging.Filter):
    """Formats the message once, redacts it, and freezes it into the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        camera = getattr(record, "camera", None)
        if camera:
            out["camera"] = camera
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", json_format: bool = False) -> None:
    """Configure the root logger. Call after importing ``onvif`` (it reconfigures logging)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "zeep", "httpx", "httpcore", "uvicorn.access", "libav"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
