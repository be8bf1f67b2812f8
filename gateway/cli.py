"""Command line: ``gateway run | demo | discover | probe | sim | children | config``.

``run`` lives here; the other verbs belong to their parts, which parse their own
arguments (``main(argv) -> int``), so this file stays a dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

# verb -> (module, function, one-line help)
DELEGATED: dict[str, tuple[str, str, str]] = {
    "demo": ("gateway.demo", "main", "start a three-level demo system with simulated cameras"),
    "discover": ("gateway.cameras.cli", "discover_main", "find ONVIF cameras (WS-Discovery)"),
    "probe": ("gateway.cameras.cli", "probe_main", "read device info and profiles of a camera"),
    "sim": ("gateway.sim.runner", "main", "run simulated ONVIF/RTSP cameras"),
    "children": ("gateway.cascade.cli", "main", "manage child gateways and their tokens"),
    "export": ("gateway.export.cli", "main", "verify an evidence export ZIP (录像导出)"),
}


def _run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway run", description="Run the gateway service.")
    parser.add_argument("--config", help="YAML config (default: $GATEWAY_CONFIG or embedded)")
    parser.add_argument("--host", help="bind address (overrides server.host)")
    parser.add_argument("--port", type=int, help="HTTP port (overrides server.port)")
    args = parser.parse_args(argv)

    from gateway.config import ConfigError, load_settings

    env = dict(os.environ)
    if args.host:
        env["GATEWAY__SERVER__HOST"] = args.host
    if args.port:
        env["GATEWAY__SERVER__PORT"] = str(args.port)
    try:
        settings = load_settings(args.config, env)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2
    from gateway.service import serve

    return serve(settings)


def _config(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway config", description="Check or describe config.")
    parser.add_argument("action", choices=["check", "schema"])
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    from gateway.config import ConfigError, Settings, load_settings

    if args.action == "schema":
        print(json.dumps(Settings.model_json_schema(), indent=2, ensure_ascii=False))
        return 0
    try:
        load_settings(args.config)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2
    print("config ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = {"run": "run the gateway service", "config": "check a config or print its schema"}
    verbs.update({k: v[2] for k, v in DELEGATED.items()})
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: gateway VERB [options]\n\nverbs:")
        for verb, text in verbs.items():
            print(f"  {verb:<10} {text}")
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb == "run":
        return _run(rest)
    if verb == "config":
        return _config(rest)
    if verb in DELEGATED:
        module, func, _ = DELEGATED[verb]
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    print(f"gateway: unknown verb {verb!r}; try 'gateway --help'", file=sys.stderr)
    return 2
