"""GStreamer's webrtcbin — a WebRTC stack that is neither aiortc nor ours — plays WHEP.

Real processes on loopback: ``gateway sim`` cameras (H.264 and H.265), ``gateway run``
with them as static cameras, and ``tests/gst_whep_client.py`` run by Debian's
``/usr/bin/python3`` (python3-gi; the venv cannot import ``gi``). The client decodes
with ``avdec_h264`` / ``avdec_h265`` and dumps a few luma planes; the test reads the
simulator's barcode from them (which camera, and how late).

webrtcbin 1.22 makes an RSA certificate: before the fix the gateway, as DTLS client
offering only ECDSA suites, failed the handshake with "no shared cipher".
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.sim import barcode
from tests.support import ROOT, GatewayProcess, SimProcess, free_port

SYSTEM_PYTHON = "/usr/bin/python3"
CLIENT = ROOT / "tests" / "gst_whep_client.py"


@dataclass
class Play:
    """What one webrtcbin client saw."""

    rc: int
    answer: str
    done: dict[str, Any]
    served: dict[str, Any] = field(default_factory=dict)  # X-Stream-Variant / -Codec
    codes: list[tuple[int, float]] = field(default_factory=list)  # (camera index, latency ms)
    log: str = ""

    @property
    def frames(self) -> int:
        return int(self.done.get("frames", 0))

    def answer_codec(self) -> str:
        lines = self.answer.splitlines()
        mline = next(ln for ln in lines if ln.startswith("m=video"))
        pt = mline.split()[3]
        return next(ln for ln in lines if ln.startswith(f"a=rtpmap:{pt} ")).split()[1]


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sims: list[SimProcess] = []
        self.gw: GatewayProcess | None = None

    def sim(self, base: str, codec: str, name: str, cameras: int = 1) -> list[dict[str, Any]]:
        """``cameras`` simulated cameras (camera i draws index i in its barcode)."""
        args = ["--base", base, "--http-port", str(free_port(base)), "--cameras", str(cameras)]
        args += ["--rtsp-port", str(free_port(base)), "--no-onvif", "--no-wsd"]
        args += ["--size", "320x180", "--sub-size", "320x180", "--fps", "15", "--gop", "15"]
        proc = SimProcess(self.tmp, *args, "--codec", codec, name=name)
        self.sims.append(proc)
        return [
            {**cam, "url": f"rtsp://admin:admin@{cam['address']}:{cam['rtsp_port']}"}
            for cam in proc.cameras
        ]

    def play(self, camera: str, codecs: str, *, frames: int = 40, **opts: str) -> Play:
        return self.start(camera, codecs, frames=frames, **opts)()

    def start(
        self, camera: str, codecs: str, *, frames: int = 40, query: str = "", **opts: str
    ) -> Any:
        """Start a client now; the returned callable waits for it and reads its result."""
        assert self.gw is not None
        out = self.tmp / f"play-{camera.replace('/', '_')}-{codecs}-{time.monotonic_ns()}"
        out.mkdir()
        url = f"{self.gw.base_url}/api/v1/streams/{camera}/whep{query}"
        args = [SYSTEM_PYTHON, str(CLIENT), url]
        args += ["--codecs", codecs, "--frames", str(frames), "--timeout", "30"]
        # "=": a token may start with "-", which argparse would take for an option
        args += [f"--token={self.gw.token or ''}", "--dump", str(out)]
        for key, value in opts.items():
            args += [f"--{key.replace('_', '-')}", value]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

        def wait() -> Play:
            stdout, stderr = proc.communicate(timeout=60)
            events = [json.loads(ln) for ln in stdout.decode().splitlines() if ln.startswith("{")]
            answer = next((e for e in events if e["event"] == "answer"), {})
            done = next((e for e in events if e["event"] == "done"), {})
            return Play(
                proc.returncode,
                answer.get("sdp", ""),
                done,
                answer.get("served") or {},
                _read_codes(out),
                stderr.decode(errors="replace")[-2000:],
            )

        return wait

    def close(self) -> None:
        if self.gw is not None:
            self.gw.stop()
        for sim in self.sims:
            sim.stop()


def _read_codes(folder: Path) -> list[tuple[int, float]]:
    """The barcodes in the dumped luma planes: (camera index, latency in ms)."""
    codes = []
    for meta_path in sorted(folder.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        raw = np.frombuffer((folder / f"{meta_path.stem}.gray").read_bytes(), np.uint8)
        w, h, stride = meta["width"], meta["height"], meta["stride"]
        luma = raw[: stride * h].reshape(h, stride)[:, :w]
        code = barcode.decode(luma)
        if code is not None:
            ms, index = code
            codes.append((index, meta["received"] * 1000 - ms))
    return codes


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("gst"))
    try:
        (h264,) = rig.sim("127.0.31.1", "h264", "sim-h264")
        # Two H.265 cameras, each with its own encoder: a second RTSP session on one
        # simulated camera forces an IDR in the first one's stream.
        hevc, hevc2 = rig.sim("127.0.32.1", "hevc", "sim-h265", cameras=2)
        cameras = [
            {"id": "cam-264", "rtsp_url": f"{h264['url']}/main"},
            {"id": "cam-265", "rtsp_url": f"{hevc['url']}/main"},
            # H.265 main stream, H.264 sub-stream, as many cameras ship.
            {
                "id": "cam-265s",
                "rtsp_url": f"{hevc2['url']}/main",
                "sub_rtsp_url": f"{h264['url']}/sub",
            },
        ]
        rig.gw = GatewayProcess(
            rig.tmp,
            {
                "cameras": cameras,
                "motion": {"enabled": False},
                "relay": {"interfaces": ["127.0.0.1"], "source_wait_s": 10},
            },
        )
        yield rig
    finally:
        rig.close()


def _setup(answer: str) -> str:
    return next(ln for ln in answer.splitlines() if ln.startswith("a=setup:")).split(":")[1]


def _check_picture(play: Play, index: int) -> None:
    assert play.codes, f"no barcode read from the dumped frames: {play.done}"
    assert {i for i, _ in play.codes} == {index}, play.codes
    worst = max(ms for _, ms in play.codes)
    assert worst < 3000, f"frames arrived {worst:.0f} ms after they were drawn"


def test_webrtcbin_h264_viewer_completes_dtls_and_decodes(rig: Rig) -> None:
    # Both DTLS roles, at once: the offer's actpass (we answer passive and serve our
    # ECDSA certificate) and a viewer that insists on being the server with its RSA
    # certificate (we answer active and must offer suites an RSA server can pick).
    actpass = rig.start("cam-264", "H264")
    server = rig.start("cam-264", "H264", offer_setup="passive")
    for play, role in ((actpass(), "passive"), (server(), "active")):
        assert play.answer, play.log
        assert _setup(play.answer) == role
        assert play.answer_codec().upper() == "H264/90000"
        assert play.served == {"variant": "main", "codec": "h264"}
        assert play.rc == 0 and play.frames >= 40, (play.done, play.log)
        assert play.done["state"] == "connected", play.done
        _check_picture(play, 1)


def test_webrtcbin_offering_h265_gets_the_cameras_h265_untouched(rig: Rig) -> None:
    # Three viewers of the H.265 camera at once: H.265 only, H.265 or H.264 (H.265
    # wins: no transcode), and H.264 only (the shared transcode).
    h265 = rig.start("cam-265", "H265")
    both = rig.start("cam-265", "H265,H264")
    h264 = rig.start("cam-265", "H264")
    plays = {"H265": h265(), "H265,H264": both(), "H264": h264()}
    for offer, play in plays.items():
        assert play.answer, (offer, play.log)
        assert play.rc == 0 and play.frames >= 40, (offer, play.done, play.log)
        _check_picture(play, 1)
    assert plays["H265"].answer_codec().upper() == "H265/90000"
    assert plays["H265"].done["codec"] == "H265"
    assert plays["H265,H264"].answer_codec().upper() == "H265/90000"
    assert plays["H264"].answer_codec().upper() == "H264/90000"
    assert plays["H264"].done["codec"] == "H264"
    # The answer says what each got (the wall's tile shows it): no sub-stream here.
    assert plays["H265"].served == {"variant": "main", "codec": "h265"}
    assert plays["H265,H264"].served == {"variant": "main", "codec": "h265"}
    assert plays["H264"].served == {"variant": "h264", "codec": "h264"}


def test_h265_only_offer_for_an_h264_camera_is_refused_with_a_reason(rig: Rig) -> None:
    play = rig.play("cam-264", "H265", frames=1)
    assert play.rc == 1 and play.frames == 0
    assert "400" in play.done["error"] and "H.264" in play.done["error"], play.done


def test_by_default_an_h264_viewer_gets_the_h264_sub_stream_not_a_transcode(rig: Rig) -> None:
    # No ?variant: ``auto`` is the default. ``?variant=auto`` says the same.
    assert rig.gw is not None
    h264 = rig.start("cam-265s", "H264")
    h265 = rig.start("cam-265s", "H265,H264", query="?variant=auto")
    plays = {"H264": h264(), "H265": h265()}
    for offer, play in plays.items():
        assert play.rc == 0 and play.frames >= 40, (offer, play.done, play.log)
    _check_picture(plays["H264"], 1)  # the H.264 simulator's camera: the sub-stream
    _check_picture(plays["H265"], 2)  # the second H.265 camera's main stream
    assert plays["H264"].answer_codec().upper() == "H264/90000"
    assert plays["H264"].served == {"variant": "sub", "codec": "h264"}
    assert plays["H265"].answer_codec().upper() == "H265/90000"
    assert plays["H265"].served == {"variant": "main", "codec": "h265"}
    keys = {s["key"] for s in rig.gw.client.get("/api/v1/streams").json()["streams"]}
    assert "cam-265s/sub" in keys, keys
    assert not any(k.startswith("cam-265s/main@") for k in keys), f"a transcode ran: {keys}"
