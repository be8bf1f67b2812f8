"""Run a gateway under uvicorn (the ``run`` verb), with clean SIGTERM handling."""

from __future__ import annotations

import logging
import sys

import uvicorn

from gateway.config import Settings
from gateway.logs import setup_logging
from gateway.tlscert import ensure_self_signed, fingerprint

log = logging.getLogger(__name__)


def serve(settings: Settings) -> int:
    """Build the gateway and its HTTP app, and serve until SIGINT/SIGTERM.

    Returns non-zero, with the reason on stderr, when the gateway could not start (a
    part failed, or the port could not be bound): a supervisor must see the failure.
    """
    import onvif  # noqa: F401  - it reconfigures root logging on import; ours comes after

    setup_logging(settings.logging.level, settings.logging.json_format)
    from gateway.api.server import create_app
    from gateway.app import Gateway

    gw = Gateway(settings)
    app = create_app(gw)
    certfile: str | None = None
    keyfile: str | None = None
    cert, key = settings.server.tls_cert, settings.server.tls_key
    if not (cert and key) and settings.server.tls_self_signed:
        cert, key = ensure_self_signed(
            settings.data_dir, settings.cascade.id, [settings.server.host]
        )
    if cert and key:
        certfile, keyfile = str(cert), str(key)
        log.info("HTTPS certificate %s, SHA-256 fingerprint %s", cert, fingerprint(cert))
    log.info(
        "gateway %s (%s) listening on %s:%s",
        settings.cascade.id,
        settings.cascade.level,
        settings.server.host,
        settings.server.port,
    )
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    code = 0
    try:
        server.run()
    except SystemExit as stop:  # uvicorn exits 3 when startup (our parts) or binding fails
        code = stop.code if isinstance(stop.code, int) and stop.code else 1
    if not server.started:
        reason = gw.failure or "the HTTP server did not start (see the log above)"
        print(f"gateway: could not start: {reason}", file=sys.stderr, flush=True)
        return code or 1
    return code
