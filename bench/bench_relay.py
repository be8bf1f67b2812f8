"""Relay benchmarks: CPU per viewer, capacity, latency and time to first frame.

    .venv/bin/python bench/bench_relay.py [--quick] [--skip-browser]

Processes (all on loopback): ``gateway sim`` cameras at 1080p25 (H.264, 2 s GOP,
4 Mbit/s; a second sim with B-frames, which the gateway must transcode), one
``gateway run``, receiver processes of N aiortc WHEP viewers each, and Chromium for
latency and time to first frame.

- CPU is the gateway process's utime+stime (``/proc/PID/stat``) over a window,
  minus the idle figure measured in the same run. Receivers do not decode
  (their decoder only counts frames), so they cost this 2-core box as little as
  they can; they still share it with the gateway, so capacity is a lower bound.
- Frames dropped = frames the viewers should have got (25 fps × window) minus
  frames they assembled, plus the relay's own subscriber drops.
- Glass-to-glass latency: the sim burns the wall-clock time into each frame; the
  page decodes it in ``requestVideoFrameCallback`` at presentation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FPS = 25
TICK = os.sysconf("SC_CLK_TCK")
from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS  # noqa: E402


# -- receiver process ----------------------------------------------------------------------
class _Counter:
    """Per receiver: RTP packets, frames (marker bits) and lost packets (sequence gaps)."""

    instances: ClassVar[list[_Counter]] = []

    def __init__(self) -> None:
        self.packets = self.frames = self.lost = 0
        self.seq: int | None = None
        _Counter.instances.append(self)


def _light_receivers() -> None:
    """Make aiortc receivers count packets instead of buffering and decoding them.

    SRTP is still decrypted; the jitter buffer, NACK logic and the decoder are
    skipped, so one receiver process can stand in for many viewers.
    """
    import aiortc.rtcrtpreceiver as rx

    async def handle(self: Any, packet: Any, arrival_time_ms: int) -> None:
        c = self.__dict__.get("_bench_counter")
        if c is None:
            c = self.__dict__["_bench_counter"] = _Counter()
        c.packets += 1
        if c.seq is not None:
            c.lost += (packet.sequence_number - c.seq - 1) & 0xFFFF
        c.seq = packet.sequence_number
        if packet.marker:
            c.frames += 1

    rx.RTCRtpReceiver._handle_rtp_packet = handle

    # A browser drains its socket from a dedicated network thread; these receivers
    # share a busy Python process, so give their sockets room for a 1080p keyframe
    # burst (aiortc sends a frame's packets back to back). aioice sets the size
    # from this constant right after binding.
    import aioice.turn

    aioice.turn.UDP_SOCKET_BUFFER_SIZE = 4 << 20


async def _receiver_main(base_url: str, token: str) -> None:
    """Viewers on demand; commands on stdin, one JSON line each, answers on stdout."""
    import httpx

    _light_receivers()
    from tests.relay_helpers import WhepClient

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)
    clients: list[WhepClient] = []
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        out: dict[str, Any] = {}
        if "add" in cmd:
            failures = 0
            for _ in range(cmd["add"]):
                c = WhepClient(http, f"/api/v1/streams/{cmd['camera']}/whep")
                try:
                    r = await c.start()
                except httpx.HTTPError:
                    failures += 1
                    await c.stop(delete=False)
                    continue
                if r.status_code == 201:
                    clients.append(c)
                else:
                    failures += 1
                    await c.stop(delete=False)
            out = {"viewers": len(clients), "failures": failures}
        elif "counts" in cmd:
            out = {
                "frames": [c.frames for c in _Counter.instances],
                "lost": sum(c.lost for c in _Counter.instances),
            }
        elif "quit" in cmd:
            break
        print(json.dumps(out), flush=True)
    for c in clients:
        await c.stop()
    await http.aclose()


class Receivers:
    """A receiver process, driven over stdin/stdout."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "receive", base_url, token or ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self.viewers = 0

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def add(self, n: int, camera: str) -> None:
        r = self.ask(add=n, camera=camera)
        if r["failures"]:
            raise RuntimeError(f"{r['failures']} viewers could not start")
        self.viewers = r["viewers"]

    def counts(self) -> dict[str, Any]:
        return self.ask(counts=True)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()  # EOF ends the receiver's loop too
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- measuring ----------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def window(pid: int, seconds: float, receivers: list[Receivers], gw: Any = None) -> dict[str, Any]:
    """Gateway CPU (cores), the source's and the viewers' frame rates over ``seconds``."""
    before = [r.counts() for r in receivers]
    dropped0 = _relay_dropped(gw)
    rig = [r.proc.pid for r in receivers]
    c0, t0 = cpu_seconds(pid), time.monotonic()
    r0 = sum(cpu_seconds(p) for p in rig)
    time.sleep(seconds)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    r1 = sum(cpu_seconds(p) for p in rig)
    after = [r.counts() for r in receivers]
    rates = []
    lost = 0
    for b, a in zip(before, after, strict=True):
        rates += [(y - x) / (t1 - t0) for x, y in zip(b["frames"], a["frames"], strict=False)]
        lost += a["lost"] - b["lost"]
    return {
        "cores": round((c1 - c0) / (t1 - t0), 4),
        "receivers_cores": round((r1 - r0) / (t1 - t0), 3),
        "source_fps": _source_fps(gw),
        "fps_min": round(min(rates), 2) if rates else None,
        "fps_median": round(statistics.median(rates), 2) if rates else None,
        "packets_lost": lost,
        "relay_dropped": _relay_dropped(gw) - dropped0,
    }


def _source_fps(gw: Any, key: str = "cam-a/main") -> float | None:
    if gw is None:
        return None
    for hub in gw.client.get("/api/v1/streams").json()["streams"]:
        if hub.get("key") == key:
            return hub.get("fps_in")
    return None


def _relay_dropped(gw: Any) -> int:
    if gw is None:
        return 0
    sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
    return sum(s["dropped"] for s in sessions)


def measure_cpu(gw: Any, quick: bool) -> dict[str, Any]:
    """Idle; 1..10 viewers of the passthrough camera; one viewer of the transcoded one."""
    pid = gw.popen.pid
    win = 4 if quick else 8
    res: dict[str, Any] = {"window_s": win}
    time.sleep(2)
    res["idle"] = window(pid, win, [])["cores"]
    rx = Receivers(gw.base_url, gw.token)
    try:
        steps = []
        for n in range(1, 11):
            rx.add(1, "cam-a")
            time.sleep(2)
            w = window(pid, win, [rx], gw)
            steps.append({"viewers": n, **w})
            print(f"  passthrough viewers={n}: {w}", flush=True)
        res["passthrough"] = steps
    finally:
        rx.stop()
    time.sleep(gw_linger_s + 2)  # the camera-a ingest stops after the linger time
    res["idle_after"] = window(pid, win, [])["cores"]
    rx = Receivers(gw.base_url, gw.token)
    try:
        rx.add(1, "cam-b")
        time.sleep(3)
        res["transcode_1"] = window(pid, win, [rx], gw)
        rx.add(1, "cam-b")
        time.sleep(2)
        res["transcode_2"] = window(pid, win, [rx], gw)
        res["streams"] = gw.client.get("/api/v1/streams").json()["streams"]
        print(f"  transcode: {res['transcode_1']} / {res['transcode_2']}", flush=True)
    finally:
        rx.stop()
    return res


def measure_capacity(gw: Any, quick: bool) -> dict[str, Any]:
    """Add viewers of the 1080p25 passthrough camera until frames or RTP packets drop."""
    pid = gw.popen.pid
    steps = [16, 32, 48, 64, 80] if not quick else [16, 32, 64]
    procs = [Receivers(gw.base_url, gw.token) for _ in range(2)]
    res: dict[str, Any] = {"steps": []}
    try:
        total = 0
        for target in steps:
            try:
                while total < target:
                    procs[total % 2].add(1, "cam-a")
                    total += 1
            except (RuntimeError, ValueError, OSError) as err:
                # A viewer could not even start (e.g. the POST timed out): saturated.
                res["steps"].append({"viewers": target, "ok": False, "error": str(err)[:200]})
                print(f"  capacity viewers={target}: failed to add viewers: {err}", flush=True)
                break
            time.sleep(6)  # every new viewer connected and past its start-up burst
            w = window(pid, 6, procs, gw)
            # No drops: every viewer got (nearly) every frame the camera sent, the relay
            # shed nothing, and no RTP packet went missing (a lost packet is a broken
            # picture until the next keyframe even when the frame count looks right).
            ref = w["source_fps"] or FPS
            ok = (
                w["fps_min"] is not None
                and w["fps_min"] >= 0.95 * ref
                and not w["relay_dropped"]
                and not w["packets_lost"]
            )
            sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
            w["states"] = dict(Counter(x["state"] for x in sessions))
            res["steps"].append({"viewers": total, "ok": ok, **w})
            print(f"  capacity viewers={total}: ok={ok} {w}", flush=True)
            if not ok:
                break
    finally:
        for p in procs:
            p.stop()
    good = [s["viewers"] for s in res["steps"] if s["ok"]]
    res["max_ok"] = max(good) if good else 0
    return res


# -- browser: latency and time to first frame -------------------------------------------------
LATENCY_JS = """(n) => new Promise((resolve) => {
  const v = document.getElementById("video");
  const c = document.createElement("canvas");
  const out = [];
  let k = 0;
  const step = (now, meta) => {
    if (k++ % 2 === 0) {
      c.width = v.videoWidth; c.height = v.videoHeight;
      const ctx = c.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(v, 0, 0);
      const r = decodeBarcode(ctx.getImageData(0, 0, c.width, c.height));
      const shown = performance.timeOrigin + (meta.expectedDisplayTime || now);
      if (r) out.push(shown - r.ms);
    }
    if (out.length >= n) resolve(out); else v.requestVideoFrameCallback(step);
  };
  v.requestVideoFrameCallback(step);
})"""


def upstream_latency(rtsp_url: str, n: int) -> dict[str, float]:
    """Sim → RTSP → PyAV demux, read from the barcode: the part before the gateway relays."""
    import av
    import numpy as np

    from gateway.sim import barcode

    samples: list[float] = []
    with av.open(rtsp_url, options={"rtsp_transport": "tcp"}, timeout=(5, 5)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "SLICE"
        for packet in c.demux(stream):
            demuxed_ms = time.time() * 1000
            for f in packet.decode():
                luma = np.frombuffer(f.planes[0], np.uint8).reshape(
                    f.height, f.planes[0].line_size
                )[:, : f.width]
                code = barcode.decode(luma)
                if code:
                    samples.append(demuxed_ms - code[0])
            if len(samples) >= n + 25:
                break
    return _summary(samples[25:])  # skip the start-up burst


def measure_browser(gw: Any, camera: str, quick: bool) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    res: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

        def open_page() -> Any:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.add_init_script(f"localStorage.setItem('gw_token', {json.dumps(gw.token)})")
            page.goto(f"{gw.base_url}/player.html?camera={camera}")
            page.add_script_tag(path=str(BARCODE_JS))
            page.wait_for_function(
                "() => window.player && window.player.timing.firstFrame", timeout=20000
            )
            return page

        first = open_page()
        t = first.evaluate("() => window.player.timing")
        res["ttff_cold_ms"] = t["firstFrame"] - t["offer"]
        time.sleep(3)
        samples = first.evaluate(LATENCY_JS, 60 if quick else 200)
        res["latency_ms"] = _summary(samples)
        ttff: list[float] = []
        answers: list[float] = []
        for i in range(5 if quick else 12):
            time.sleep(0.37 + (i % 5) * 0.29)  # land at different points of the GOP
            page = open_page()
            t = page.evaluate("() => window.player.timing")
            ttff.append(t["firstFrame"] - t["offer"])
            answers.append(t["answer"] - t["offer"])
            page.close()
        res["ttff_warm_ms"] = _summary(ttff)
        res["answer_ms"] = _summary(answers)  # offer made → answer in hand
        first.close()
        browser.close()
    return res


def _summary(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {
        "n": len(xs),
        "p50": round(statistics.median(xs), 1),
        "p95": round(xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))], 1),
        "max": round(xs[-1], 1),
    }


# -- orchestration ------------------------------------------------------------------------
gw_linger_s = 3.0


def main(argv: list[str]) -> int:
    if argv[:1] == ["receive"]:
        asyncio.run(_receiver_main(argv[1], argv[2]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer steps")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)

    import tempfile

    from tests.support import GatewayProcess, SimProcess

    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    common = ["--size", "1920x1080", "--fps", str(FPS), "--gop", "50", "--bitrate", "4000"]
    sims = [
        SimProcess(tmp, "--base", "127.0.51.1", *common, name="sim-a"),
        SimProcess(tmp, "--base", "127.0.52.1", "--bframes", *common, name="sim-b"),
        # The sim's own default size, for latency: 1080p rendering and encoding in
        # the sim alone take a good part of the 100 ms budget on this box.
        SimProcess(tmp, "--base", "127.0.53.1", "--size", "1280x720", "--gop", "50", name="sim-c"),
    ]
    gw = None
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        gw = GatewayProcess(
            tmp,
            {
                "cameras": [
                    {"id": "cam-a", "rtsp_url": sims[0].cameras[0]["rtsp_main"]},
                    {"id": "cam-b", "rtsp_url": sims[1].cameras[0]["rtsp_main"]},
                    {"id": "cam-c", "rtsp_url": sims[2].cameras[0]["rtsp_main"]},
                ],
                "relay": {"interfaces": ["127.0.0.1"], "max_sessions": 400},
                "streams": {"linger_s": gw_linger_s},
                "motion": {"enabled": False},
                "logging": {"level": "WARNING"},
            },
        )
        if not args.skip_cpu:
            print("cpu per viewer …", flush=True)
            results["cpu"] = measure_cpu(gw, args.quick)
        if not args.skip_capacity:
            print("capacity …", flush=True)
            results["capacity"] = measure_capacity(gw, args.quick)
        if not args.skip_browser:
            print("browser latency and time to first frame …", flush=True)
            n = 60 if args.quick else 200
            for camera, sim in (("cam-c", sims[2]), ("cam-a", sims[0])):
                up = upstream_latency(sim.cameras[0]["rtsp_main"], n)
                results[f"browser_{camera}"] = {
                    "upstream_ms": up,
                    **measure_browser(gw, camera, args.quick),
                }
                print(f"  {camera}: {results[f'browser_{camera}']}", flush=True)
    finally:
        if gw is not None:
            gw.stop()
        for s in sims:
            s.stop()
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


def _cpu_rows(cpu: dict[str, Any]) -> list[str]:
    idle = cpu["idle"]
    steps = cpu["passthrough"]
    first = steps[0]["cores"] - idle
    marginal = [steps[i]["cores"] - steps[i - 1]["cores"] for i in range(1, len(steps))]
    per_viewer = (steps[-1]["cores"] - steps[0]["cores"]) / (len(steps) - 1)
    transcode_first = cpu["transcode_1"]["cores"] - cpu["idle_after"]
    # The transcode alone: take away what any first viewer costs (ingest + 1 stream).
    transcode = transcode_first - first
    transcode_2nd = cpu["transcode_2"]["cores"] - cpu["transcode_1"]["cores"]
    return [
        f"| gateway idle (CPU in cores of the gateway process, {cpu['window_s']} s windows) "
        f"| {idle:.3f} | |",
        f"| 1st viewer, passthrough (ingest + 1 stream) | {first:.3f} | |",
        f"| each further passthrough viewer (mean of 2nd…10th) | {per_viewer:.4f} | |",
        f"| 1st viewer, transcoded camera (ingest + decode + encode + 1 stream) "
        f"| {transcode_first:.3f} | |",
        f"| one 1080p25 transcode (the above minus the passthrough 1st viewer) "
        f"| {transcode:.3f} | |",
        f"| 2nd viewer of the transcoded camera | {transcode_2nd:.4f} | |",
        f"| passthrough viewer / one 1080p25 transcode | {per_viewer / transcode:.3f} "
        f"(1/{transcode / max(per_viewer, 1e-9):.0f}) | ≤ 1/20 |",
        f"| 2nd…10th passthrough viewer / 1st | "
        f"{', '.join(f'{m / first:.0%}' for m in marginal)} | ≤ 10 % each |",
        f"| 2nd viewer / 1st, transcoded camera | {transcode_2nd / transcode_first:.1%} | ≤ 10 % |",
    ]


def report(r: dict[str, Any]) -> str:
    """The figures as markdown, with the ratios the goals are stated in."""
    lines = [f"Run {r['started']}.", "", "| figure | value | goal |", "|---|---|---|"]
    if "cpu" in r:
        lines += _cpu_rows(r["cpu"])

    if "capacity" in r:
        cap = r["capacity"]
        marks = ", ".join(f"{s['viewers']}{'✓' if s['ok'] else '✗'}" for s in cap["steps"])
        lines.append(
            f"| 1080p25 camera-viewer streams without frame or packet loss | {cap['max_ok']} "
            f"(steps: {marks}) | ≥ 64 |"
        )
        for st in cap["steps"]:
            if "error" in st:
                lines.append(f"| … {st['viewers']} viewers: {st['error']} | | |")
                continue
            lines.append(
                f"| … {st['viewers']} viewers: gateway {st['cores']:.2f} cores, receivers "
                f"{st['receivers_cores']:.2f} cores, slowest viewer {st['fps_min']} fps of "
                f"{st['source_fps']}, relay drops {st['relay_dropped']} | | |"
            )
    for camera, size in (("cam-c", "720p25"), ("cam-a", "1080p25")):
        b = r.get(f"browser_{camera}")
        if not b:
            continue
        lat, tt, up = b["latency_ms"], b["ttff_warm_ms"], b["upstream_ms"]
        lines += [
            f"| glass-to-glass latency {size}, sim → gateway → Chromium (n={lat['n']}) "
            f"| p50 {lat['p50']} ms, p95 {lat['p95']} ms | p95 ≤ 100 ms |",
            f"| … of which sim → RTSP → demux (PyAV reader, n={up['n']}) "
            f"| p50 {up['p50']} ms, p95 {up['p95']} ms | |",
            f"| time to first frame {size}, new viewer of a playing camera, 2 s GOP "
            f"(n={tt['n']}) | p50 {tt['p50']} ms, max {tt['max']} ms | ≤ 1 s |",
            f"| … of which offer → answer (gather, POST, relay, answer) "
            f"| p50 {b['answer_ms']['p50']} ms | |",
            f"| time to first frame {size}, first viewer (starts the ingest) | "
            f"{b['ttff_cold_ms']:.0f} ms | |",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
