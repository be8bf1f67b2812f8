"""Relay benchmarks: CPU per viewer, capacity, latency and time to first frame.

    .venv/bin/python bench/bench_relay.py [--quick] [--skip-browser] [--skip-cpu]
        [--receivers raw|aiortc] [--workers N] [--compare-workers 0,2]
        [--configs 0:off,0:on:on,2:on:on] [--cpu-window S] [--steps 64,128,…]

Processes (all on loopback): ``gateway sim`` cameras at 1080p25 (H.264, 2 s GOP,
4 Mbit/s, about 400 RTP packets/s per viewer; a second sim with B-frames, which the
gateway must transcode), one ``gateway run`` (with ``relay.workers`` child processes
when ``--workers N`` > 0), receiver processes of up to 64 WHEP viewers each, and
Chromium for latency and time to first frame.

- Receivers. Every viewer negotiates with aiortc (``tests.relay_helpers.WhepClient``:
  real ICE and DTLS). ``--receivers raw`` (the default): once a viewer is connected
  its UDP socket is taken away from asyncio (``loop.remove_reader``) and one thread
  per receiver process reads all such sockets (``epoll``). Per datagram: RTP is
  counted from its cleartext header (packets, frames by the marker bit, lost
  packets by the sequence number; nothing is decrypted), STUN (and DTLS) goes back
  to aioice on the event loop so the gateway's consent checks (RFC 7675) keep
  being answered, RTCP is dropped. ``--receivers aiortc``: aiortc's own receive
  path (SRTP decrypted, RTP parsed; jitter buffer, NACK and decoder skipped).
  The receivers step compares the two: receiver CPU per viewer, raw vs aiortc.
- CPU is utime+stime (``/proc/PID/stat``) over a window, of the gateway process
  and all its descendants (relay workers; a child that appears mid-window counts
  from 0), also given per process (main vs children); the CPU step subtracts the
  idle figure measured in the same run. Receivers share this 2-core box with the
  gateway, so capacity is a lower bound.
- Capacity: viewers of the 1080p25 passthrough camera, in steps, until a step
  drops: a step passes when the slowest viewer got ≥ 95 % of the source's frame
  rate, the relay shed nothing and no RTP packet went missing.
  ``--compare-workers 0,2`` runs it once per ``relay.workers`` value, each with a
  fresh gateway (same sims), and gives the maxima and their ratio.
- Sender configurations: ``--configs W:SHARED[:GSO],…`` runs the CPU and capacity
  steps once per configuration (``relay.workers``, ``relay.shared_rtp``,
  ``relay.udp_gso``), each with a fresh gateway, and compares each with the first
  (CPU per further viewer, viewers without loss).
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
import math
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FPS = 25
TICK = os.sysconf("SC_CLK_TCK")
RCVBUF = 4 << 20
VIEWERS_PER_RECEIVER = 64  # viewers per receiver process in the capacity step
CAPACITY_STEPS = [16, 32, 64, 96, 128, 160, 192, 224, 256]
from tests.browser.pages import BARCODE_JS, CHROMIUM, CHROMIUM_ARGS  # noqa: E402


# -- receiver process ----------------------------------------------------------------------
class _Counter:
    """Per viewer: RTP packets, frames (marker bits) and lost packets (sequence gaps)."""

    instances: ClassVar[list[_Counter]] = []

    def __init__(self) -> None:
        self.packets = self.frames = self.lost = 0
        self.seq: int | None = None
        _Counter.instances.append(self)


def _light_receivers(count: bool = True) -> None:
    """Make aiortc receivers count packets instead of buffering and decoding them.

    SRTP is still decrypted; the jitter buffer, NACK logic and the decoder are
    skipped, so one receiver process can stand in for many viewers. ``count=False``
    (raw receivers): aiortc's receivers only see the few packets before the socket
    is taken over, and drop them.
    """
    import aiortc.rtcrtpreceiver as rx

    async def handle(self: Any, packet: Any, arrival_time_ms: int) -> None:
        if not count:
            return
        c = self.__dict__.get("_bench_counter")
        if c is None:
            c = self.__dict__["_bench_counter"] = _Counter()
        c.packets += 1
        if c.seq is not None:
            c.lost += (packet.sequence_number - c.seq - 1) & 0xFFFF
        c.seq = packet.sequence_number
        if packet.marker:
            c.frames += 1

    rx.RTCRtpReceiver._handle_rtp_packet = handle  # type: ignore[method-assign]

    # A browser drains its socket from a dedicated network thread; these receivers
    # share a busy Python process, so give their sockets room for a 1080p keyframe
    # burst (aiortc sends a frame's packets back to back). aioice sets the size
    # from this constant right after binding.
    import aioice.turn

    aioice.turn.UDP_SOCKET_BUFFER_SIZE = RCVBUF


def _nominated_protocol(pc: Any) -> Any:
    """The aioice ``StunProtocol`` of ``pc``'s nominated candidate pair (RTP component)."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport  # RTCDtlsTransport
        connection = dtls.transport._connection  # RTCIceTransport → aioice Connection
        pair = connection._nominated.get(1)
        if pair is not None:
            return pair.protocol
    raise RuntimeError("no nominated ICE pair")


class _RawReader:
    """One thread per receiver process reading every viewer socket taken from asyncio.

    RTP is counted from its cleartext header (under SRTP only the payload is
    encrypted). STUN (and DTLS, e.g. a close_notify) goes back to aioice on the event
    loop, so consent checks in both directions keep working. RTCP and anything else
    is dropped (RFC 7983 / RFC 5761 demultiplexing by the first two bytes).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.viewers: dict[int, tuple[socket.socket, _Counter, Any]] = {}
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="raw-rx", daemon=True)
        self.thread.start()

    def steal(self, pc: Any) -> None:
        """Take ``pc``'s (connected) UDP socket away from the event loop."""
        protocol = _nominated_protocol(pc)
        transport = protocol.transport  # asyncio's _SelectorDatagramTransport
        fd = transport.get_extra_info("socket").fileno()
        # loop.remove_reader(fd) refuses a descriptor a transport owns; the transport's
        # own pause_reading() does the same (loop._remove_reader(fd)) and keeps the
        # transport consistent (it will not re-add the reader, closing works).
        transport.pause_reading()
        if transport.is_reading():
            raise RuntimeError("the event loop still reads the viewer's socket")
        # A second descriptor of the same socket: aioice keeps sending (STUN, RTCP
        # receiver reports) on its own, and closing it later does not pull ours away.
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.viewers[sock.fileno()] = (sock, _Counter(), protocol)
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _run(self) -> None:
        buf = bytearray(2048)
        view = memoryview(buf)
        poll = self.epoll.poll
        viewers = self.viewers
        back = self.loop.call_soon_threadsafe
        while not self.stopping:
            for fd, _ in poll(0.2):
                v = viewers.get(fd)
                if v is None:
                    continue
                sock, c, protocol = v
                recv = sock.recvfrom_into
                while True:
                    try:
                        n, addr = recv(buf)
                    except BlockingIOError:
                        break
                    except OSError:
                        with contextlib.suppress(OSError):
                            self.epoll.unregister(fd)
                        break
                    if n < 4:
                        continue
                    b0 = buf[0]
                    if 128 <= b0 <= 191:  # RTP or RTCP
                        b1 = buf[1]
                        if 192 <= b1 <= 223:  # RTCP packet types 192..223
                            continue
                        seq = buf[2] << 8 | buf[3]
                        c.packets += 1
                        if c.seq is not None:
                            c.lost += (seq - c.seq - 1) & 0xFFFF
                        c.seq = seq
                        if b1 & 0x80:
                            c.frames += 1
                    elif b0 <= 3 or 20 <= b0 <= 63:  # STUN, DTLS
                        try:
                            back(protocol.datagram_received, bytes(view[:n]), addr)
                        except RuntimeError:  # the event loop is closed
                            return

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(2)
        for sock, _, _ in self.viewers.values():
            sock.close()
        self.epoll.close()


async def _connected(pc: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _receiver_main(base_url: str, token: str, mode: str = "raw") -> None:
    """Viewers on demand; commands on stdin, one JSON line each, answers on stdout."""
    import httpx

    raw = mode == "raw"
    _light_receivers(count=not raw)
    from tests.relay_helpers import WhepClient

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)
    clients: list[WhepClient] = []
    loop = asyncio.get_running_loop()
    rawrx = _RawReader(loop) if raw else None

    async def take_over(c: WhepClient) -> str | None:
        """Steal the viewer's socket once it is connected; the reason if not."""
        if not await _connected(c.pc):
            return f"not connected ({c.pc.connectionState})"
        assert rawrx is not None
        try:
            rawrx.steal(c.pc)
        except (RuntimeError, AttributeError, OSError) as err:
            return f"socket not taken over: {err!r}"
        return None

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        out: dict[str, Any] = {}
        if "add" in cmd:
            failures = 0
            errors: list[str] = []
            for _ in range(cmd["add"]):
                c = WhepClient(http, f"/api/v1/streams/{cmd['camera']}/whep")
                try:
                    r = await c.start()
                except httpx.HTTPError as exc:
                    failures += 1
                    errors.append(f"POST failed: {exc!r}")
                    await c.stop(delete=False)
                    continue
                if r.status_code != 201:
                    failures += 1
                    errors.append(f"POST answered {r.status_code}")
                    await c.stop(delete=False)
                    continue
                clients.append(c)
                # One viewer connecting at a time per receiver process (as a page
                # would not open dozens at once): the capacity figure is about
                # carrying viewers, not about a burst of handshakes.
                if raw and (err := await take_over(c)) is not None:
                    errors.append(err)
                    failures += 1
            out = {"viewers": len(clients), "failures": failures, "errors": errors[:3]}
        elif "counts" in cmd:
            out = {
                "frames": [c.frames for c in _Counter.instances],
                "lost": sum(c.lost for c in _Counter.instances),
            }
        elif "quit" in cmd:
            break
        print(json.dumps(out), flush=True)
    if rawrx is not None:
        rawrx.stop()
    for c in clients:
        with contextlib.suppress(Exception):
            await c.stop()
    await http.aclose()


class Receivers:
    """A receiver process, driven over stdin/stdout."""

    def __init__(self, base_url: str, token: str | None, mode: str = "raw") -> None:
        self.mode = mode
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "receive", base_url, token or "", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self.viewers = 0

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"receiver process exited ({self.proc.poll()})")
        return json.loads(line)

    def ask(self, **cmd: Any) -> dict[str, Any]:
        self.send(**cmd)
        return self.answer()

    def add(self, n: int, camera: str) -> None:
        self.send(add=n, camera=camera)
        self.added()

    def added(self) -> None:
        """The answer to an ``add`` sent earlier (receivers can add viewers in parallel)."""
        r = self.answer()
        self.viewers = r["viewers"]
        if r["failures"]:
            raise RuntimeError(f"{r['failures']} viewers could not start {r.get('errors', '')}")

    def counts(self) -> dict[str, Any]:
        return self.ask(counts=True)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()  # EOF ends the receiver's loop too
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- measuring ----------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command name, parent pid, utime+stime in seconds) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    head, tail = text.rsplit(")", 1)
    fields = tail.split()
    return head.split("(", 1)[1], int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


_HAS_CHILDREN_FILE = Path(f"/proc/self/task/{os.getpid()}/children").exists()


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    if _HAS_CHILDREN_FILE:
        out, i = [pid], 0
        while i < len(out):
            p = out[i]
            i += 1
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for task in os.listdir(f"/proc/{p}/task"):
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        kids = Path(f"/proc/{p}/task/{task}/children").read_text()
                        out += [int(k) for k in kids.split()]
        return out
    # No /proc/PID/task/TID/children (kernel without CONFIG_PROC_CHILDREN): parents
    # from every process's stat.
    kids_of: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None:
            kids_of.setdefault(st[1], []).append(int(name))
    out, i = [pid], 0
    while i < len(out):
        out += kids_of.get(out[i], [])
        i += 1
    return out


def process_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """{pid: (name, CPU seconds)} of ``pid`` and its descendants."""
    res = {}
    for p in _tree(pid):
        if (st := _stat(p)) is not None:
            res[p] = (st[0], st[2])
    return res


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and all its descendants (the relay workers)."""
    return sum(s for _, s in process_cpu(pid).values())


def window(pid: int, seconds: float, receivers: list[Receivers], gw: Any = None) -> dict[str, Any]:
    """Gateway CPU (cores, its whole process tree), the source's and the viewers'
    frame rates over ``seconds``."""
    before = [r.counts() for r in receivers]
    dropped0 = _relay_dropped(gw)
    rig = [r.proc.pid for r in receivers]
    c0, t0 = process_cpu(pid), time.monotonic()
    r0 = sum(cpu_seconds(p) for p in rig)
    time.sleep(seconds)
    c1, t1 = process_cpu(pid), time.monotonic()
    r1 = sum(cpu_seconds(p) for p in rig)
    after = [r.counts() for r in receivers]
    rates = []
    lost = 0
    for b, a in zip(before, after, strict=True):
        rates += [(y - x) / (t1 - t0) for x, y in zip(b["frames"], a["frames"], strict=False)]
        lost += a["lost"] - b["lost"]
    dt = t1 - t0
    # A process that appears mid-window counts from 0; one that ended is not seen.
    per = {p: (name, (s - c0.get(p, (name, 0.0))[1]) / dt) for p, (name, s) in c1.items()}
    return {
        "cores": round(sum(c for _, c in per.values()), 4),
        "cores_main": round(per[pid][1], 4) if pid in per else None,
        "cores_children": [[p, name, round(c, 4)] for p, (name, c) in per.items() if p != pid],
        "receivers_cores": round((r1 - r0) / dt, 3),
        "source_fps": _source_fps(gw),
        "fps_min": round(min(rates), 2) if rates else None,
        "fps_median": round(statistics.median(rates), 2) if rates else None,
        "packets_lost": lost,
        "relay_dropped": _dropped_since(gw, dropped0),
    }


def _source_fps(gw: Any, key: str = "cam-a/main") -> float | None:
    if gw is None:
        return None
    for hub in gw.client.get("/api/v1/streams").json()["streams"]:
        if hub.get("key") == key:
            return hub.get("fps_in")
    return None


def _relay_dropped(gw: Any) -> dict[str, int]:
    """Access units the relay dropped, per session."""
    if gw is None:
        return {}
    sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
    return {s["id"]: s["dropped"] for s in sessions}


def _dropped_since(gw: Any, before: dict[str, int]) -> int:
    """Drops since ``before`` in the sessions still open (closed ones: relay_closed)."""
    return sum(max(n - before.get(sid, 0), 0) for sid, n in _relay_dropped(gw).items())


def _relay_closed(gw: Any) -> dict[str, int]:
    """Sessions the relay has closed so far, by reason."""
    return dict(gw.client.get("/api/v1/relay/sessions").json().get("closed", {}))


def measure_cpu(
    gw: Any, quick: bool, mode: str = "raw", win: float | None = None
) -> dict[str, Any]:
    """Idle; 1..10 viewers of the passthrough camera; one viewer of the transcoded one."""
    pid = gw.popen.pid
    win = win or (4 if quick else 8)
    res: dict[str, Any] = {"window_s": win}
    time.sleep(2)
    res["idle"] = window(pid, win, [])["cores"]
    rx = Receivers(gw.base_url, gw.token, mode)
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
    rx = Receivers(gw.base_url, gw.token, mode)
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


def measure_receivers(gw: Any, n: int, win: float) -> dict[str, Any]:
    """Receiver CPU per viewer: ``n`` raw viewers, then ``n`` aiortc viewers, in turn."""
    pid = gw.popen.pid
    res: dict[str, Any] = {"viewers": n, "window_s": win}
    for mode in ("raw", "aiortc"):
        rx = Receivers(gw.base_url, gw.token, mode)
        try:
            rx.add(n, "cam-a")
            time.sleep(5)
            w = window(pid, win, [rx], gw)
        finally:
            rx.stop()
        w["receivers_per_viewer"] = round(w["receivers_cores"] / n, 5)
        w["receivers_vs_gateway"] = round(w["receivers_cores"] / max(w["cores"], 1e-9), 3)
        res[mode] = w
        print(f"  receivers {mode} viewers={n}: {w}", flush=True)
        time.sleep(2)  # the viewers' sessions are gone before the next mode starts
    res["aiortc_over_raw"] = round(
        res["aiortc"]["receivers_per_viewer"] / max(res["raw"]["receivers_per_viewer"], 1e-9), 2
    )
    return res


def measure_capacity(
    gw: Any, steps: list[int], mode: str = "raw", per_process: int = VIEWERS_PER_RECEIVER
) -> dict[str, Any]:
    """Add viewers of the 1080p25 passthrough camera until frames or RTP packets drop.

    Receiver processes are added as the viewers grow (one per ``per_process``); each
    step's new viewers are spread over the least loaded ones and started in parallel.
    """
    pid = gw.popen.pid
    procs: list[Receivers] = []
    res: dict[str, Any] = {"steps": [], "receivers": mode}
    closed0 = _relay_closed(gw)
    try:
        for target in steps:
            while len(procs) < math.ceil(target / per_process):
                procs.append(Receivers(gw.base_url, gw.token, mode))
            share = Counter[int]()
            load = [p.viewers for p in procs]
            for _ in range(target - sum(load)):
                i = load.index(min(load))
                load[i] += 1
                share[i] += 1
            try:
                for i, k in share.items():
                    procs[i].send(add=k, camera="cam-a")
                errors = []
                for i in share:
                    try:
                        procs[i].added()
                    except (RuntimeError, ValueError, OSError) as err:
                        errors.append(str(err))
                if errors:
                    raise RuntimeError("; ".join(errors))
            except (RuntimeError, ValueError, OSError) as err:
                # A viewer could not even start (e.g. the POST timed out): saturated.
                closed = Counter(_relay_closed_or_none(gw))
                closed.subtract(closed0)
                res["steps"].append(
                    {
                        "viewers": target,
                        "ok": False,
                        "error": str(err)[:200],
                        "relay_closed": {k: v for k, v in closed.items() if v},
                    }
                )
                print(
                    f"  capacity viewers={target}: failed to add viewers: {err}; "
                    f"relay closed {res['steps'][-1]['relay_closed']}",
                    flush=True,
                )
                break
            total = sum(p.viewers for p in procs)
            time.sleep(6)  # every new viewer connected and past its start-up burst
            try:
                w = window(pid, 6, procs, gw)
            except httpx.HTTPError as err:
                # The gateway's API did not answer within the client's timeout: saturated.
                res["steps"].append({"viewers": total, "ok": False, "error": repr(err)[:200]})
                print(f"  capacity viewers={total}: the API did not answer: {err!r}", flush=True)
                break
            # No drops: every viewer got (nearly) every frame the camera sent, the relay
            # shed nothing, and no RTP packet went missing (a lost packet is a broken
            # picture until the next keyframe even when the frame count looks right).
            ok = _step_ok(w)
            if not ok and not w["relay_dropped"] and not w["packets_lost"]:
                # Only a viewer's frame count fell short: a stall of either side (or of the
                # receiver's counting thread) shorter than a second fails a 6 s window.
                # Judge again over 12 s, the same for every relay.workers value.
                print(f"  capacity viewers={total}: short of frames in 6 s, 12 s window …")
                first = w
                try:
                    w = window(pid, 12, procs, gw)
                except httpx.HTTPError as err:
                    res["steps"].append({"viewers": total, "ok": False, "error": repr(err)[:200]})
                    break
                w["first_window"] = first
                ok = _step_ok(w)
            sessions = gw.client.get("/api/v1/relay/sessions").json()["sessions"]
            w["states"] = dict(Counter(x["state"] for x in sessions))
            w["receiver_processes"] = len(procs)
            closed = Counter(_relay_closed(gw))
            closed.subtract(closed0)
            w["relay_closed"] = {k: v for k, v in closed.items() if v}  # since the first step
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


def _step_ok(w: dict[str, Any]) -> bool:
    """Every viewer got (nearly) every frame the camera sent, nothing shed or lost."""
    ref = w["source_fps"] or FPS
    return (
        w["fps_min"] is not None
        and w["fps_min"] >= 0.95 * ref
        and not w["relay_dropped"]
        and not w["packets_lost"]
    )


def _relay_closed_or_none(gw: Any) -> dict[str, int]:
    try:
        return _relay_closed(gw)
    except httpx.HTTPError:  # a saturated gateway may not answer at all
        return {}


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
                luma = np.frombuffer(
                    f.planes[0], np.uint8
                ).reshape(  # type: ignore[call-overload]
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


def gateway_config(
    sims: list[Any], workers: int, max_sessions: int, send: dict[str, bool] | None = None
) -> dict[str, Any]:
    relay: dict[str, Any] = {"interfaces": ["127.0.0.1"], "max_sessions": max_sessions}
    # shared_rtp / udp_gso when given; else the gateway's defaults (so it runs against
    # gateways without them).
    relay.update(send or {})
    if workers:
        # 0 is the relay's default (the in-process relay): left out, so this also runs
        # against a gateway without the setting.
        relay["workers"] = workers
    return {
        "cameras": [
            {"id": "cam-a", "rtsp_url": sims[0].cameras[0]["rtsp_main"]},
            {"id": "cam-b", "rtsp_url": sims[1].cameras[0]["rtsp_main"]},
            {"id": "cam-c", "rtsp_url": sims[2].cameras[0]["rtsp_main"]},
        ],
        "relay": relay,
        "streams": {"linger_s": gw_linger_s},
        "motion": {"enabled": False},
        "logging": {"level": "WARNING"},
    }


def _stop_gateway(gw: Any) -> None:
    """Stop the gateway; any of its children still alive after that are killed, so
    they do not load the next measurement."""
    tree = _tree(gw.popen.pid)[1:]
    gw.stop()
    for p in tree:
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                os.kill(p, signal.SIGKILL)
                print(f"  (killed pid {p}, left over by the gateway)", flush=True)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _configs(text: str) -> list[tuple[int, dict[str, bool]]]:
    """``0:off,2:on:on`` → [(0, {shared_rtp: False}), (2, {shared_rtp: True, udp_gso: True})]."""
    out = []
    for item in text.split(","):
        workers, *flags = item.strip().split(":")
        send = {k: v == "on" for k, v in zip(("shared_rtp", "udp_gso"), flags, strict=False)}
        out.append((int(workers), send))
    return out


def _label(workers: int, send: dict[str, bool]) -> str:
    flags = ", ".join(f"{k}={'on' if v else 'off'}" for k, v in send.items())
    return f"relay.workers={workers}" + (f", {flags}" if flags else "")


def main(argv: list[str]) -> int:
    if argv[:1] == ["receive"]:
        asyncio.run(_receiver_main(argv[1], argv[2], *argv[3:4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter windows, fewer steps")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--skip-capacity", action="store_true")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument(
        "--skip-receivers", action="store_true", help="skip the raw vs aiortc receiver step"
    )
    ap.add_argument(
        "--receivers",
        choices=["raw", "aiortc"],
        default="raw",
        help="how viewers receive in the CPU and capacity steps (default: raw)",
    )
    ap.add_argument(
        "--receivers-viewers",
        type=int,
        default=32,
        help="viewers per kind in the raw vs aiortc receiver step (default: 32)",
    )
    ap.add_argument("--workers", type=int, default=0, help="relay.workers of the gateway")
    ap.add_argument(
        "--compare-workers",
        type=_int_list,
        metavar="N,M,…",
        help="run the capacity step once per relay.workers value (e.g. 0,2), each "
        "with a fresh gateway, and compare the maxima",
    )
    ap.add_argument(
        "--configs",
        type=_configs,
        metavar="W:SHARED[:GSO],…",
        help="run the CPU and capacity steps once per sender configuration, each with a "
        "fresh gateway, and compare them with the first: W = relay.workers, SHARED and GSO "
        "= relay.shared_rtp and relay.udp_gso, on or off (e.g. 0:off,0:on:off,0:on:on)",
    )
    ap.add_argument("--cpu-window", type=float, help="seconds per CPU window (default 8)")
    ap.add_argument(
        "--steps",
        type=_int_list,
        help=f"capacity steps (default: {','.join(map(str, CAPACITY_STEPS))}; --quick: 16,32,64)",
    )
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args(argv)
    steps = args.steps or ([16, 32, 64] if args.quick else CAPACITY_STEPS)
    max_sessions = max(400, 2 * max(steps), 2 * args.receivers_viewers)

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
    compare = args.compare_workers
    runs: list[tuple[int, dict[str, bool]]] = args.configs or [
        (w, {}) for w in compare or [args.workers]
    ]
    gw = None
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "receivers": args.receivers,
        "workers": compare or args.workers,
    }
    try:
        for i, (workers, send) in enumerate(runs):
            first = i == 0
            label = _label(workers, send)
            print(f"gateway with {label} …", flush=True)
            gw = GatewayProcess(
                tmp, gateway_config(sims, workers, max_sessions, send), name=f"gw{i}-w{workers}"
            )
            if args.configs:
                run: dict[str, Any] = {"workers": workers, "label": label}
                results.setdefault("configs", []).append(run)
                if not args.skip_cpu:
                    print(f"cpu per viewer ({label}) …", flush=True)
                    run["cpu"] = measure_cpu(gw, args.quick, args.receivers, args.cpu_window)
                if not args.skip_capacity:
                    print(f"capacity ({label}) …", flush=True)
                    run["capacity"] = measure_capacity(gw, steps, args.receivers)
                    run["capacity"]["workers"] = workers
                    print(f"  {label}: {run['capacity']['max_ok']} viewers", flush=True)
                _stop_gateway(gw)
                gw = None
                continue
            if first and not args.skip_cpu:
                print("cpu per viewer …", flush=True)
                results["cpu"] = measure_cpu(gw, args.quick, args.receivers, args.cpu_window)
            if first and not args.skip_receivers:
                print("receivers: raw vs aiortc …", flush=True)
                results["receivers_cpu"] = measure_receivers(
                    gw, args.receivers_viewers, 4 if args.quick else 8
                )
            if compare or not args.skip_capacity:
                print(f"capacity (relay.workers={workers}) …", flush=True)
                cap = measure_capacity(gw, steps, args.receivers)
                cap["workers"] = workers
                if compare:
                    results.setdefault("compare_workers", []).append(cap)
                    print(f"  relay.workers={workers}: {cap['max_ok']} viewers", flush=True)
                else:
                    results["capacity"] = cap
            if first and not args.skip_browser:
                print("browser latency and time to first frame …", flush=True)
                n = 60 if args.quick else 200
                for camera, sim in (("cam-c", sims[2]), ("cam-a", sims[0])):
                    up = upstream_latency(sim.cameras[0]["rtsp_main"], n)
                    results[f"browser_{camera}"] = {
                        "upstream_ms": up,
                        **measure_browser(gw, camera, args.quick),
                    }
                    print(f"  {camera}: {results[f'browser_{camera}']}", flush=True)
            _stop_gateway(gw)
            gw = None
    finally:
        if gw is not None:
            _stop_gateway(gw)
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


def _gateway_cores(st: dict[str, Any]) -> str:
    kids = st.get("cores_children") or []
    if not kids:
        return f"gateway {st['cores']:.2f} cores"
    parts = ", ".join(f"{name} {c:.2f}" for _, name, c in kids)
    return f"gateway {st['cores']:.2f} cores (main {st['cores_main']:.2f}; children {parts})"


def _capacity_rows(cap: dict[str, Any], what: str) -> list[str]:
    marks = ", ".join(f"{s['viewers']}{'✓' if s['ok'] else '✗'}" for s in cap["steps"])
    lines = [
        f"| 1080p25 camera-viewer streams without frame or packet loss{what} | {cap['max_ok']} "
        f"(steps: {marks}) | ≥ 64 |"
    ]
    for st in cap["steps"]:
        if "error" in st:
            lines.append(f"| … {st['viewers']} viewers: {st['error']} | | |")
            continue
        lines.append(
            f"| … {st['viewers']} viewers: {_gateway_cores(st)}, receivers "
            f"{st['receivers_cores']:.2f} cores ({st.get('receiver_processes', '?')} processes), "
            f"slowest viewer {st['fps_min']} fps of {st['source_fps']}, packets lost "
            f"{st['packets_lost']}, relay drops {st['relay_dropped']} | | |"
        )
    return lines


def _per_viewer(cpu: dict[str, Any]) -> tuple[float, float]:
    """(1st viewer, mean of each further one) in cores, from the CPU step."""
    steps = cpu["passthrough"]
    first = steps[0]["cores"] - cpu["idle"]
    return first, (steps[-1]["cores"] - steps[0]["cores"]) / (len(steps) - 1)


def _configs_rows(runs: list[dict[str, Any]], rx: str) -> list[str]:
    """Sender configurations, same run: CPU rows, capacity rows, ratios to the first."""
    lines: list[str] = []
    for run in runs:
        if "cpu" in run:
            lines += [f"| **{run['label']}** | | |", *_cpu_rows(run["cpu"])]
        if "capacity" in run:
            lines += _capacity_rows(run["capacity"], f", {run['label']}, {rx} receivers")
    base = runs[0] if runs else {}
    for run in runs[1:]:
        vs = f"{run['label']} against {base['label']}"
        if "cpu" in run and "cpu" in base:
            (_, v0), (f1, v1) = _per_viewer(base["cpu"]), _per_viewer(run["cpu"])
            lines += [
                f"| each further viewer, {vs} | {v1:.4f} / {v0:.4f} = 1/{v0 / max(v1, 1e-9):.2f} "
                "| |",
                f"| further viewer / 1st viewer, {run['label']} | {v1 / f1:.0%} | ≤ 10 % |",
            ]
        if "capacity" in run and "capacity" in base:
            n0, n1 = base["capacity"]["max_ok"], run["capacity"]["max_ok"]
            lines.append(
                f"| viewers without loss, {vs} | {n1} / {n0} = {n1 / max(n0, 1):.2f}× | ≥ 2× |"
            )
    return lines


def report(r: dict[str, Any]) -> str:
    """The figures as markdown, with the ratios the goals are stated in."""
    lines = [f"Run {r['started']}.", "", "| figure | value | goal |", "|---|---|---|"]
    if "cpu" in r:
        lines += _cpu_rows(r["cpu"])

    if "receivers_cpu" in r:
        rc = r["receivers_cpu"]
        raw, aio = rc["raw"], rc["aiortc"]
        lines += [
            f"| receivers' CPU per viewer, {rc['viewers']} viewers each, raw vs aiortc "
            f"(cores) | {raw['receivers_per_viewer']:.4f} vs {aio['receivers_per_viewer']:.4f} "
            f"(aiortc / raw = {rc['aiortc_over_raw']}) | |",
            f"| … receivers' CPU / gateway's CPU | raw {raw['receivers_vs_gateway']}, "
            f"aiortc {aio['receivers_vs_gateway']} | |",
        ]

    rx = r.get("receivers", "aiortc")
    if "capacity" in r:
        cap = r["capacity"]
        lines += _capacity_rows(cap, f", relay.workers={cap['workers']}, {rx} receivers")
    if "compare_workers" in r:
        caps = r["compare_workers"]
        for cap in caps:
            lines += _capacity_rows(cap, f", relay.workers={cap['workers']}, {rx} receivers")
        base = caps[0]
        for cap in caps[1:]:
            ratio = cap["max_ok"] / base["max_ok"] if base["max_ok"] else float("inf")
            lines.append(
                f"| viewers, relay.workers={cap['workers']} / relay.workers={base['workers']} "
                f"| {cap['max_ok']} / {base['max_ok']} = {ratio:.2f}× | ≥ 2× |"
            )
    lines += _configs_rows(r.get("configs") or [], rx)
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
