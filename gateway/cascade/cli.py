"""``gateway children add|list|revoke``: manage the child gateways of this parent.

Runs against the parent's data directory (from ``--config``, ``$GATEWAY_CONFIG`` or
``$GATEWAY_DATA_DIR``), also while the parent is running: SQLite takes care of the
sharing, and the running parent closes a revoked child's connection within seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from gateway.config import ID_PATTERN, ConfigError, load_settings
from gateway.tlscert import served_fingerprint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gateway children", description="Manage child gateways (下级平台) and their tokens."
    )
    parser.add_argument("--config", help="the parent's YAML config")
    sub = parser.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="issue a token for a child (printed once)")
    add.add_argument("name", help="the child's cascade id, e.g. village-3")
    add.add_argument("--json", action="store_true", help='print {"name", "token"} as JSON')
    add.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    lst = sub.add_parser("list", help="list children")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    rev = sub.add_parser("revoke", help="revoke a child's token")
    rev.add_argument("name")
    rev.add_argument("--config", dest="config_sub", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import re

    from gateway.store import children
    from gateway.store.db import Database

    try:
        settings = load_settings(args.config_sub or args.config)
    except ConfigError as err:
        print(f"gateway: {err}", file=sys.stderr)
        return 2
    db = Database(settings.data_dir / "gateway.db")
    try:
        children.init(db)
        if args.action == "add":
            if not re.fullmatch(ID_PATTERN, args.name):
                print(
                    f"gateway: {args.name!r} is not a valid id"
                    " (lower-case letters, digits, - and _)",
                    file=sys.stderr,
                )
                return 2
            try:
                token = children.add(db, args.name)
            except children.ChildExists:
                print(
                    f"gateway: child {args.name} exists; revoke it first to issue a new token",
                    file=sys.stderr,
                )
                return 1
            # Run without the parent's config (only GATEWAY_DATA_DIR), the flag is unknown:
            # a certificate the parent generated in its data dir is the one it serves.
            pin = served_fingerprint(settings.server.tls_cert, True, settings.data_dir)
            if args.json:
                print(json.dumps({"name": args.name, "token": token, "tls_fingerprint": pin}))
            else:
                print(
                    f"token for child {args.name} (shown once; put it in its cascade.parent.token):"
                )
                print(token)
                if pin:
                    print(f"this parent's certificate (cascade.parent.tls_fingerprint): {pin}")
            return 0
        if args.action == "list":
            rows = children.list_all(db)
            if args.json:
                print(json.dumps([_public(c) for c in rows], ensure_ascii=False))
                return 0
            for c in rows:
                state = "revoked" if c.revoked else "active"
                seen = _when(c.last_seen) if c.last_seen else "never"
                print(f"{c.name:<24} {state:<8} created {_when(c.created)}  last seen {seen}")
            return 0
        if children.revoke(db, args.name):
            print(f"revoked {args.name}")
            return 0
        print(f"gateway: no active child named {args.name}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _public(c: object) -> dict:
    return {
        "name": c.name,  # type: ignore[attr-defined]
        "created": c.created,  # type: ignore[attr-defined]
        "revoked": c.revoked,  # type: ignore[attr-defined]
        "last_seen": c.last_seen,  # type: ignore[attr-defined]
    }
