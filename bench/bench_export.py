"""Evidence export benchmark: footage of two villages and the town, exported at the town.

    .venv/bin/python bench/bench_export.py              # records 60 s first (~1.5 min)
    .venv/bin/python bench/bench_export.py --seconds 20

One ``gateway sim`` (3 cameras, 320x180, 10 fps) and three gateways (town-a ← village-1,
village-2), each recording one camera in 2 s segments. After ``--seconds`` of footage, one
export of the three cameras over that span: the time from the request to the ZIP, its
size, the throughput, and the time ``gateway export verify`` takes to check it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.export_support import iso, run_export, start_system, verify_cli  # noqa: E402

CAMS = ["cam-01", "village-1/cam-01", "village-2/cam-01"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gen = start_system(Path(tmp), "127.0.91.1")
        system = next(gen)
        try:
            # The town keeps only ~9 s (its retention is the tests'): export the villages' span
            # and the town camera's last seconds, as they are.
            t0 = time.time()
            time.sleep(args.seconds + 2)
            body = {"cameras": CAMS, "start": iso(t0), "end": iso(t0 + args.seconds)}
            job = run_export(system.town, body, timeout=600)
            if job["state"] not in ("done", "partial"):
                print("export did not finish:", job, system.town.tail(3000), file=sys.stderr)
                return 1
            took = job["finished"] - job["created"]
            zip_path = Path(tmp) / "bench.zip"
            zip_path.write_bytes(system.town.client.get(job["download"]).content)
            v0 = time.monotonic()
            ok = verify_cli(zip_path)
            verify_s = time.monotonic() - v0
            recorded = sum(c["recorded_seconds"] for c in job["cameras"])
            print(
                f"export: {len(CAMS)} cameras x {args.seconds:.0f} s span,"
                f" {recorded:.0f} s recorded, state {job['state']}"
            )
            print(
                f"  request to ZIP: {took:.2f} s; ZIP {job['bytes'] / 1e6:.1f} MB"
                f" ({job['bytes'] / 1e6 / took:.1f} MB/s, {recorded / took:.0f}x real time)"
            )
            print(
                f"  gateway export verify: {verify_s:.2f} s (exit {ok.returncode}, incl. start-up)"
            )
        finally:
            for _ in gen:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
