"""A WHEP client on GStreamer's webrtcbin: a WebRTC stack that is neither aiortc nor ours.

Run by the tests with Debian's ``/usr/bin/python3`` (python3-gi; the venv cannot see
``gi``), so this file imports nothing from the project. It offers one recvonly video
transceiver with the codecs asked for, POSTs the offer once ICE gathering is done,
applies the answer, decodes what arrives (``rtph264depay ! avdec_h264`` or
``rtph265depay ! avdec_h265``) to GRAY8 and counts the frames.

Stdout gets JSON lines: ``{"event": "answer", ...}`` after the POST, then one summary
``{"event": "done", "frames": n, ...}``. With ``--dump DIR`` the luma planes of a few
frames are written there (``<n>.gray`` plus a ``.json`` with size and the receive
wall-clock time) so the test can read the simulator's barcode with numpy.

Exit status: 0 when ``--frames`` frames were decoded within ``--timeout``, else 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

CAPS = {
    "H264": (
        "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},"
        "packetization-mode=(string)1,profile-level-id=(string)42e01f,"
        "level-asymmetry-allowed=(string)1"
    ),
    "H265": (
        "application/x-rtp,media=video,encoding-name=H265,clock-rate=90000,payload={pt},"
        "profile-id=(string)1,tier-flag=(string)0,level-id=(string)93"
    ),
}


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = Gst.Pipeline.new("whep")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        if args.local_address:
            # libnice leaves loopback out of its host candidates; name it explicitly.
            self.agent = self.webrtc.get_property("ice-agent")
            self.agent.emit("add-local-ip-address", args.local_address)
        caps = ";".join(
            CAPS[name].format(pt=96 + 2 * i) for i, name in enumerate(args.codecs.split(","))
        )
        self.webrtc.emit(
            "add-transceiver",
            GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
            Gst.Caps.from_string(caps),
        )
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("pad-added", self._on_pad)
        self.frames = 0
        self.codec = ""
        self.first_at: float | None = None
        self.started = time.monotonic()
        self.offered = False
        self.session_url = ""
        self.error = ""
        self.lock = threading.Lock()
        self.dump = Path(args.dump) if args.dump else None

    # -- signalling ----------------------------------------------------------------
    def _on_negotiation_needed(self, _element: Any) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def _on_offer(self, promise: Gst.Promise, _data: Any) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def _on_gathering(self, *_args: Any) -> None:
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and not self.offered:
            self.offered = True
            GLib.idle_add(self._post_offer)

    def _post_offer(self) -> bool:
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        if self.args.offer_setup:
            # Tell the gateway we insist on our role; webrtcbin (actpass locally) follows
            # whatever the answer says, so the handshake matches what was sent.
            sdp = sdp.replace("a=setup:actpass", f"a=setup:{self.args.offer_setup}")
        headers = {"Content-Type": "application/sdp"}
        if self.args.token:
            headers["Authorization"] = f"Bearer {self.args.token}"
        req = urllib.request.Request(self.args.url, sdp.encode(), headers, method="POST")
        served = {}
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, answer = resp.status, resp.read().decode()
                location = resp.headers.get("Location")
                served = {
                    "variant": resp.headers.get("X-Stream-Variant"),
                    "codec": resp.headers.get("X-Stream-Codec"),
                }
                if location:
                    self.session_url = urllib.parse.urljoin(self.args.url, location)
        except urllib.error.HTTPError as err:
            status, answer = err.code, err.read().decode(errors="replace")
        except OSError as err:
            status, answer = 0, str(err)
        say(event="answer", status=status, sdp=answer, offer=sdp, served=served)
        if status != 201:
            self.error = f"POST answered {status}: {answer[:200]}"
            self.loop.quit()
            return False
        _res, msg = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        return False

    # -- media ---------------------------------------------------------------------
    def _on_pad(self, _element: Any, pad: Gst.Pad) -> None:
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_string("encoding-name") or ""
        self.codec = name.upper()
        kind = "h265" if self.codec == "H265" else "h264"
        # Without decoding (benchmarks) each sample is one access unit.
        tail = (
            f"avdec_{kind} ! videoconvert ! video/x-raw,format=GRAY8 ! " if self.args.decode else ""
        )
        bin_ = Gst.parse_bin_from_description(
            f"queue ! rtp{kind}depay ! {kind}parse ! {tail}"
            "appsink name=sink emit-signals=true sync=false",
            True,
        )
        self.pipe.add(bin_)
        bin_.get_by_name("sink").connect("new-sample", self._on_sample)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))

    def _on_sample(self, sink: Any) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        now = time.time()
        with self.lock:
            self.frames += 1
            n = self.frames
            if self.first_at is None:
                self.first_at = time.monotonic()
        a = self.args
        last = a.dump_after + a.dump_every * a.dump_count
        if (
            self.dump is not None
            and a.decode
            and a.dump_after < n <= last
            and n % a.dump_every == 0
        ):
            self._dump(sample, n, now)
        if n >= self.args.frames:
            GLib.idle_add(self.loop.quit)
        return Gst.FlowReturn.OK

    def _dump(self, sample: Gst.Sample, n: int, now: float) -> None:
        assert self.dump is not None
        s = sample.get_caps().get_structure(0)
        w, h = s.get_value("width"), s.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            return
        try:
            data = bytes(info.data)
        finally:
            buf.unmap(info)
        stride = len(data) // h if h else w
        (self.dump / f"{n}.gray").write_bytes(data)
        meta = {"width": w, "height": h, "stride": stride, "received": now}
        (self.dump / f"{n}.json").write_text(json.dumps(meta))

    def _on_bus(self, _bus: Any, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            self.error = f"{err.message} ({debug})"
            self.loop.quit()

    def _quit(self) -> bool:
        self.loop.quit()
        return False

    def _delete_session(self) -> None:
        """Leave as a WHEP client should: DELETE the session resource."""
        if not self.session_url:
            return
        headers = {"Authorization": f"Bearer {self.args.token}"} if self.args.token else {}
        req = urllib.request.Request(self.session_url, headers=headers, method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as err:
            say(event="delete", error=str(err))

    def run(self) -> int:
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_bus)
        GLib.timeout_add(int(self.args.timeout * 1000), self.loop.quit)
        # SIGTERM (a benchmark ending its viewers) still prints the summary.
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self._quit)
        self.pipe.set_state(Gst.State.PLAYING)
        self.loop.run()
        ice = self.webrtc.get_property("ice-connection-state").value_nick
        state = self.webrtc.get_property("connection-state").value_nick
        self.pipe.set_state(Gst.State.NULL)
        self._delete_session()
        say(
            event="done",
            frames=self.frames,
            codec=self.codec,
            ice=ice,
            state=state,
            first_frame_s=round(self.first_at - self.started, 3) if self.first_at else None,
            seconds=round(time.monotonic() - self.started, 3),
            error=self.error,
        )
        return 0 if self.frames >= self.args.frames else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url", help="the WHEP endpoint")
    p.add_argument("--codecs", default="H264", help="offered, in order: H264, H265 or both")
    p.add_argument("--token", default="", help="bearer token")
    p.add_argument("--frames", type=int, default=50, help="stop after this many frames")
    p.add_argument("--timeout", type=float, default=30.0, help="give up after this many s")
    p.add_argument("--local-address", default="127.0.0.1", help="our ICE host address")
    p.add_argument(
        "--no-decode", dest="decode", action="store_false", help="count access units only"
    )
    p.add_argument("--offer-setup", default="", help="rewrite a=setup:actpass to this")
    p.add_argument("--dump", default="", help="directory for a few luma planes")
    p.add_argument("--dump-after", type=int, default=10)
    p.add_argument("--dump-every", type=int, default=5)
    p.add_argument("--dump-count", type=int, default=4)
    args = p.parse_args()
    Gst.init(None)
    return Client(args).run()


if __name__ == "__main__":
    sys.exit(main())
