"""``gateway discover`` and ``gateway probe``.

Both print a table (or ``--json``) on stdout and errors on stderr, without a
traceback: exit code 2 for a bad command line, 1 when the work itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _logging(with_onvif: bool = False) -> None:
    if with_onvif:
        import onvif  # noqa: F401  - it reconfigures root logging on import; ours comes after

    from gateway.logs import setup_logging

    setup_logging("WARNING")


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


class _Bar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0

    def __call__(self, probed: int, total: int, found: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and probed < total):
            return
        self.last = now
        filled = int(30 * probed / total) if total else 30
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {probed}/{total} probed, {found} found"
        )
        if probed >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def discover_main(argv: Sequence[str]) -> int:
    """``gateway discover [--range CIDR ...] [--interface IF] [--timeout S] [--json]``."""
    parser = _Parser(
        prog="gateway discover",
        description="Find ONVIF cameras by WS-Discovery: a unicast sweep of --range, "
        "multicast only on the --interface(s) named. Without either, the config's "
        "discovery.ranges and discovery.interfaces are used.",
    )
    parser.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="CIDR",
        help="CIDR range or address to sweep by unicast (repeatable)",
    )
    parser.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="IF",
        help="interface name or IPv4 address to multicast on (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds to wait for answers (default: discovery.timeout_s)",
    )
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=None, help="probes in flight")
    parser.add_argument("--rate", type=float, default=None, help="probes per second at most")
    parser.add_argument("--config", help="YAML config (default: $GATEWAY_CONFIG or embedded)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(list(argv))
    _logging()

    from gateway.cameras import discovery
    from gateway.config import ConfigError, load_settings

    try:
        cfg = load_settings(args.config).discovery
    except ConfigError as err:
        print(f"gateway discover: {err}", file=sys.stderr)
        return EXIT_USAGE
    ranges = args.range or ([] if args.interface else cfg.ranges)
    interfaces = args.interface or ([] if args.range else cfg.interfaces)
    if not ranges and not interfaces:
        print(
            "gateway discover: nothing to probe; give --range CIDR or --interface IF "
            "(or set discovery.ranges / discovery.interfaces in the config)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    timeout = args.timeout if args.timeout is not None else cfg.timeout_s
    if not 0 < timeout <= 120:
        print("gateway discover: --timeout must be between 0 and 120 s", file=sys.stderr)
        return EXIT_USAGE
    try:
        targets = discovery.expand_targets(ranges)
        for name in interfaces:
            discovery.interface_address(name)
    except discovery.DiscoveryError as err:
        print(f"gateway discover: {err}", file=sys.stderr)
        return EXIT_USAGE
    bar = _Bar(enabled=bool(targets) and not args.quiet)
    try:
        result = asyncio.run(
            discovery.Scan(
                port=args.port or cfg.port,
                timeout=timeout,
                concurrency=args.concurrency or cfg.concurrency,
                rate_per_s=args.rate or cfg.rate_per_s,
                progress=bar,
            ).run(targets, interfaces)
        )
    except (OSError, discovery.DiscoveryError) as err:
        print(f"gateway discover: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    devices = sorted(result.devices, key=lambda d: _ip_sort(d.address))
    if args.json:
        print(json.dumps([d.public() for d in devices], ensure_ascii=False, indent=1))
    else:
        rows = [
            [d.address, d.name, d.location, d.hardware, (d.xaddrs or [""])[0], d.endpoint]
            for d in devices
        ]
        if rows:
            header = ["ADDRESS", "NAME", "LOCATION", "HARDWARE", "ONVIF", "ENDPOINT"]
            print(_table(rows, header))
        print(
            f"{len(devices)} device(s) found in {result.elapsed_s:.1f} s"
            + (f"; {result.rejected} bad replies ignored" if result.rejected else ""),
            file=sys.stderr,
        )
    return 0


def _ip_sort(address: str) -> tuple[int, int]:
    import ipaddress

    try:
        ip = ipaddress.ip_address(address)
        return ip.version, int(ip)
    except ValueError:
        return 9, 0


def _split_host(text: str, default_port: int = 80) -> tuple[str, int]:
    from gateway.cameras.model import check_host

    text = text.strip()
    port = default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    else:
        host = text
    if not 1 <= port <= 65535:
        raise ValueError("port out of range")
    return check_host(host), port


def probe_main(argv: Sequence[str]) -> int:
    """``gateway probe HOST[:PORT] --username U --password P [--json] [--https [--tls-…]]``."""
    import os

    parser = _Parser(
        prog="gateway probe",
        description="Read a camera's ONVIF device information and profiles.",
    )
    parser.add_argument("target", metavar="HOST[:PORT]")
    parser.add_argument("--username", "-u", default=None)
    parser.add_argument(
        "--password",
        "-p",
        default=None,
        help="or set GATEWAY_PROBE_PASSWORD (keeps it out of `ps`)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--https", action="store_true", help="ONVIF over HTTPS (port 443 if none)")
    parser.add_argument(
        "--tls-fingerprint", metavar="SHA256", default=None, help="accept only this certificate"
    )
    parser.add_argument(
        "--tls-trust-self-signed",
        action="store_true",
        help="accept the certificate the camera shows now (trust on first use) and print it",
    )
    args = parser.parse_args(list(argv))
    pinned: str | None = None
    if args.tls_fingerprint is not None:
        from gateway.cameras.tls import normalize_fingerprint

        try:
            pinned = normalize_fingerprint(args.tls_fingerprint)
        except ValueError as err:
            print(f"gateway probe: --tls-fingerprint {err}", file=sys.stderr)
            return EXIT_USAGE
    https = args.https or pinned is not None or args.tls_trust_self_signed
    try:
        host, port = _split_host(args.target, 443 if https else 80)
    except ValueError:
        print(f"gateway probe: {args.target!r} is not HOST or HOST:PORT", file=sys.stderr)
        return EXIT_USAGE
    if not 0 < args.timeout <= 120:
        print("gateway probe: --timeout must be between 0 and 120 s", file=sys.stderr)
        return EXIT_USAGE
    password = args.password
    if password is None:
        password = os.environ.get("GATEWAY_PROBE_PASSWORD")
    _logging(with_onvif=True)
    from gateway.cameras import onvif
    from gateway.cameras.tls import TlsPolicy

    label = f"{host}:{port}"
    tls = TlsPolicy(fingerprint=pinned, trust_on_first_use=args.tls_trust_self_signed)

    async def run() -> onvif.ProbeResult:
        async with onvif.OnvifClient(
            host,
            port,
            args.username,
            password,
            timeout=args.timeout,
            label=label,
            https=https,
            tls=tls,
        ) as client:
            return await client.probe()

    try:
        result = asyncio.run(run())
    except onvif.OnvifError as err:
        print(f"gateway probe: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    out: dict[str, Any] = {
        "device": {**vars(result.device), "host": host, "port": port},
        "profiles": [
            {
                k: p.public()[k]
                for k in (
                    "token",
                    "name",
                    "encoding",
                    "width",
                    "height",
                    "fps",
                    "gop",
                    "bitrate_kbps",
                    "stream_uri",
                    "service",
                )
            }
            for p in result.profiles
        ],
        "snapshot_uri": result.snapshot_uri,
        "ptz": result.ptz,
        "services": result.services,
        "tls_fingerprint": tls.pin if https else None,
    }
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    dev = result.device
    print(f"{dev.manufacturer} {dev.model}  firmware {dev.firmware}  serial {dev.serial}")
    events = "http://www.onvif.org/ver10/events/wsdl" in result.services
    media2 = "http://www.onvif.org/ver20/media/wsdl" in result.services
    print(
        f"ONVIF {label}  PTZ: {'yes' if result.ptz else 'no'}  "
        f"events: {'yes' if events else 'no'}  Media2: {'yes' if media2 else 'no'}  "
        f"snapshot: {result.snapshot_uri or '-'}"
    )
    if https:
        print(f"HTTPS certificate SHA-256: {tls.pin or 'verified by a trusted CA'}")
    rows = [
        [
            p.token,
            p.name,
            p.encoding,
            f"{p.width}x{p.height}",
            f"{p.fps:g}" if p.fps else "-",
            str(p.bitrate_kbps or "-"),
            str(p.gop or "-"),
            "Media2" if p.service == "media2" else "Media1",
            p.stream_uri,
        ]
        for p in result.profiles
    ]
    header = ["TOKEN", "NAME", "CODEC", "SIZE", "FPS", "KBIT/S", "GOP", "VIA", "STREAM"]
    print(_table(rows, header))
    return 0
