"""What one simulated camera costs while players pull its stream (``gateway sim``).

    .venv/bin/python bench/bench_sim.py [--cameras 1] [--size 1280x720] [--codec h264]
                                        [--bitrate 2000] [--players 1] [--seconds 10]

Starts one ``gateway sim`` with ``--cameras`` cameras, and ``--players`` ``ffmpeg
-rtsp_transport tcp -i rtsp://…/main -c copy -f null -`` per camera; after 4 s of
warm-up, the sim process's CPU time (``/proc/PID/stat`` utime+stime) over
``--seconds`` gives its share of one core, in all and per camera. The players' CPU is
not counted. The figure moves with other work on the machine: run it three times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import SimProcess, free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
BASE = "127.0.167.1"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--codec", default="h264", choices=["h264", "hevc"])
    ap.add_argument("--bitrate", type=int, default=2000, help="kbit/s")
    ap.add_argument("--players", type=int, default=1, help="players per camera")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    sim = SimProcess(
        tmp,
        "--cameras", str(args.cameras), "--base", BASE, "--codec", args.codec,
        "--http-port", str(free_port(BASE)), "--rtsp-port", str(free_port(BASE)),
        "--size", args.size, "--bitrate", str(args.bitrate), "--fps", "25", "--no-wsd",
    )  # fmt: skip
    players: list[subprocess.Popen[bytes]] = []
    try:
        for cam in sim.cameras:
            pull = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp"]
            pull += ["-i", cam["rtsp_main"], "-c", "copy", "-f", "null", "-"]
            for _ in range(args.players):
                players.append(subprocess.Popen(pull, stdin=subprocess.DEVNULL))
        time.sleep(4)
        c0, t0 = cpu_seconds(sim.popen.pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(sim.popen.pid), time.monotonic()
        alive = sum(p.poll() is None for p in players)
    finally:
        for p in players:
            p.terminate()
            p.wait(10)
        sim.stop()
    share = 100 * (c1 - c0) / (t1 - t0)
    print(
        f"{args.codec} {args.size} @25 {args.bitrate} kbit/s, {args.cameras} camera(s),"
        f" {args.players} player(s) each ({alive} still playing): sim CPU {share:.1f} % of a"
        f" core, {share / args.cameras:.1f} % per camera"
    )
    return 0 if alive == len(players) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
