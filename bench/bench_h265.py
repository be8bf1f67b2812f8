"""H.265 to the viewer: passthrough (RFC 7798) against the H.265→H.264 transcode.

    .venv/bin/python bench/bench_h265.py            # --window 8 --rounds 2

Cameras: ``tests.rtsp_support`` servers in child processes looping pre-encoded
1080p25 clips (H.265 and H.264, 4 Mbit/s, 1 s GOP), so serving them costs the
gateway nothing. One ``gateway run`` (motion off). Viewers: GStreamer ``webrtcbin``
WHEP clients (``tests/gst_whep_client.py --no-decode``, Debian's python3-gi), which
count access units without decoding.

CPU is the gateway process's utime+stime (``/proc/PID/stat``) over a window, in
cores, with viewers added one by one in the same run:

1. idle (no viewer, no ingest);
2. + an H.264 viewer of the H.264 camera: ingest + H.264 passthrough;
3. + an H.265 viewer of the H.265 camera: ingest + H.265 passthrough;
4. + a second H.265 viewer of that camera: one passthrough viewer on a running ingest;
5. + an H.264-only viewer of the H.265 camera: the shared transcode (decode + x264), also
   on the running ingest, so step 5 against step 4 charges both sides alike.

Each step's cost is the difference to the step before. The figures printed last
are the ratios the issue sets goals for: H.265 passthrough / transcode (≤ 1/20)
and H.265 passthrough / H.264 passthrough (≈ 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import GatewayProcess  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CLIENT = ROOT / "tests" / "gst_whep_client.py"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cores(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def start_camera(codec: str) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rtsp_support", "--codec", codec, "--size", "1920x1080"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())["url"]


def start_viewer(gw: GatewayProcess, camera: str, codecs: str, seconds: float) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    args = ["/usr/bin/python3", str(CLIENT), f"{gw.base_url}/api/v1/streams/{camera}/whep"]
    args += ["--codecs", codecs, "--token", gw.token or "", "--no-decode"]
    args += ["--frames", "1000000", "--timeout", str(seconds)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)


def viewer_result(proc: Any) -> dict[str, Any]:
    stdout, _ = proc.communicate(timeout=60)
    events = [json.loads(ln) for ln in stdout.decode().splitlines() if ln.startswith("{")]
    answer = next((e for e in events if e["event"] == "answer"), {})
    done = next((e for e in events if e["event"] == "done"), {})
    playing = (done.get("seconds") or 0) - (done.get("first_frame_s") or 0)
    codec = ""
    for line in answer.get("sdp", "").splitlines():
        if line.startswith("a=rtpmap:"):
            codec = line.split()[1]
            break
    return {
        "status": answer.get("status"),
        "answer_codec": codec,
        "frames": done.get("frames", 0),
        "fps": round(done.get("frames", 0) / playing, 1) if playing > 0 else 0.0,
        "error": done.get("error", ""),
    }


def quiet(gw: GatewayProcess, timeout: float = 60.0) -> None:
    """Wait until no viewer and no ingest is left from the round before."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
        streams = gw.client.get("/api/v1/streams").json()["streams"]
        if not sessions and not streams:
            time.sleep(1)
            return
        time.sleep(0.5)
    raise TimeoutError("viewers or ingests still running after the round")


def one_round(gw: GatewayProcess, window: float, settle: float) -> dict[str, Any]:
    pid = gw.popen.pid
    # Small costs first, each against a quiet base: a transcode's noise would hide them.
    steps = [("h264_passthrough", "cam-264", "H264"), ("h265_passthrough", "cam-265", "H265")]
    # A second H.265 viewer of the same camera: a viewer on a running ingest, as the
    # transcode viewer is (its decode and encode are all it adds): like for like.
    steps.append(("h265_more", "cam-265", "H265"))
    steps.append(("transcode", "cam-265", "H264"))
    total = len(steps) * (window + settle) + 10
    res: dict[str, Any] = {"idle": cores(pid, window)}
    viewers = []
    for name, camera, codecs in steps:
        viewers.append((name, start_viewer(gw, camera, codecs, total)))
        time.sleep(settle)
        res[name] = cores(pid, window)
        print(f"  {name}: {res[name]:.4f} cores in total", flush=True)
    for name, proc in viewers:
        if proc.poll() is None:
            proc.terminate()
        res[f"{name}_viewer"] = viewer_result(proc)
    # Each step's cost is what it added.
    res["cost"] = {
        "h264_passthrough": res["h264_passthrough"] - res["idle"],
        "h265_passthrough": res["h265_passthrough"] - res["h264_passthrough"],
        "h265_more": res["h265_more"] - res["h265_passthrough"],
        "transcode": res["transcode"] - res["h265_more"],
    }
    return res


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=float, default=8.0, help="seconds per CPU window")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds after adding a viewer")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-h265-"))
    cams = [start_camera("hevc"), start_camera("h264")]
    gw = None
    rounds = []
    try:
        gw = GatewayProcess(
            tmp,
            {
                "cameras": [
                    {"id": "cam-265", "rtsp_url": cams[0][1]},
                    {"id": "cam-264", "rtsp_url": cams[1][1]},
                ],
                "relay": {"interfaces": ["127.0.0.1"]},
                "streams": {"linger_s": 1},
                "motion": {"enabled": False},
                "logging": {"level": "WARNING"},
            },
        )
        for i in range(args.rounds):
            print(f"round {i + 1} …", flush=True)
            rounds.append(one_round(gw, args.window, args.settle))
            quiet(gw)
    finally:
        if gw is not None:
            gw.stop()
        for proc, _ in cams:
            proc.terminate()
            proc.wait(10)
    cost = {k: statistics.median(r["cost"][k] for r in rounds) for k in rounds[0]["cost"]}
    summary = {
        "cost_cores": {k: round(v, 4) for k, v in cost.items()},
        "h265_passthrough_per_transcode": round(cost["h265_passthrough"] / cost["transcode"], 4),
        # like for like: a viewer added on a running ingest, on both sides
        "h265_viewer_per_transcode_viewer": round(cost["h265_more"] / cost["transcode"], 4),
        "h265_per_h264_passthrough": round(cost["h265_passthrough"] / cost["h264_passthrough"], 2),
        "load_average": os.getloadavg(),
    }
    out = {"rounds": rounds, "summary": summary}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    ratio = cost["transcode"] / cost["h265_passthrough"] if cost["h265_passthrough"] > 0 else 0
    print(
        f"H.265 passthrough viewer {cost['h265_passthrough']:.4f} cores, "
        f"H.265→H.264 transcode viewer {cost['transcode']:.4f} cores: "
        f"passthrough = 1/{ratio:.0f} of the transcode; "
        f"H.264 passthrough viewer {cost['h264_passthrough']:.4f} cores "
        f"(H.265/H.264 passthrough = {summary['h265_per_h264_passthrough']} ×); "
        f"a further H.265 viewer on the running ingest {cost['h265_more']:.4f} cores = "
        f"{summary['h265_viewer_per_transcode_viewer']} of a transcode viewer"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
