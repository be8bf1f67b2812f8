"""``gateway export verify FILE [--key FINGERPRINT]``: check an export's signature and hashes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.export.bundle import verify_zip


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gateway export", description="Evidence exports (录像导出)."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    verify = sub.add_parser("verify", help="check an export ZIP's signature and every SHA-256")
    verify.add_argument("file", type=Path, help="the export ZIP")
    verify.add_argument(
        "--key", help="the fingerprint the gateway shows (/api/v1/exports/key); checked if given"
    )
    args = parser.parse_args(argv)
    verdict = verify_zip(args.file, args.key)
    if verdict.ok:
        export_id = verdict.manifest.get("export_id", "?")
        print(
            f"OK: {args.file}: export {export_id}, signature valid (key {verdict.fingerprint}),"
            f" {verdict.checked} files match their SHA-256 / 校验通过"
        )
        return 0
    print(f"FAILED: {args.file} / 校验失败", file=sys.stderr)
    for problem in verdict.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1
