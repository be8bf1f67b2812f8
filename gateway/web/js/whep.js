// A small WHEP player (draft-ietf-wish-whep): receive-only WebRTC video into a <video>.
//
//   const p = new WhepPlayer(videoEl, "/api/v1/streams/cam-01/whep", {
//     token,                      // bearer token; default: localStorage "gw_token"
//     onState: (state, detail) => {},  // connecting|connected|playing|reconnecting|offline|error|stopped
//     onStats: (s) => {},         // {fps, kbps, framesDecoded, framesDropped, width, height, packetsLost}
//     onServed: (s) => {},        // {variant: main|sub|h264|low, codec: h264|h265}, from the answer
//   });
//   p.start(); … p.stop();
//
// It reconnects by itself, with capped backoff, when the connection fails, the track
// ends, or no frame is decoded for `stallMs` — so a camera that goes offline and
// comes back resumes in the same page. It POSTs the offer once ICE gathering is
// complete, or after `gatherTimeoutMs` with the candidates it has by then; later
// candidates follow by PATCH (trickle ICE). Servers that answer with all their own
// candidates (ours does) connect at once either way: the viewer's checks reach them.

const SDP = "application/sdp";

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function storedToken() {
  try {
    return localStorage.getItem("gw_token") || undefined;
  } catch {
    return undefined;
  }
}

// RFC 9725 §4.6 Link headers: <turn:host>; rel="ice-server"; username=...; credential=...
export function parseIceLinks(header) {
  const servers = [];
  if (!header) return servers;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = part.match(/<([^>]+)>(.*)/);
    if (!m || !/rel="?ice-server"?/.test(m[2])) continue;
    const server = { urls: m[1] };
    const user = m[2].match(/username="([^"]*)"/);
    const cred = m[2].match(/credential="([^"]*)"/);
    if (user) server.username = user[1];
    if (cred) server.credential = cred[1];
    servers.push(server);
  }
  return servers;
}

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export class WhepPlayer {
  constructor(video, url, opts = {}) {
    this.video = video;
    this.url = url;
    this.opts = {
      statsIntervalMs: 1000,
      stallMs: 6000, // no decoded frame for this long: start over
      firstFrameMs: 8000, // connected but nothing decoded yet
      minBackoffMs: 250,
      maxBackoffMs: 2000,
      // Chromium takes ~200 ms to finish gathering on a box with a few interfaces;
      // waiting for all of it would be most of the time to first frame.
      gatherTimeoutMs: 250,
      ...opts,
    };
    this.iceServers = opts.iceServers || [];
    this.state = "idle";
    this.pc = null;
    this.location = null;
    this.lastStats = null;
    // performance.now() marks of the current attempt: offer, answer, firstFrame.
    this.timing = {};
    this.sessions = 0; // how many sessions this player has opened (reconnects + 1)
    this._running = false;
    this._gen = 0;
    this._backoff = this.opts.minBackoffMs;
    this._timer = null;
  }

  start() {
    if (this._running) return;
    this._running = true;
    this._connect();
  }

  stop() {
    this._running = false;
    this._gen += 1;
    clearTimeout(this._timer);
    this._teardown();
    this.video.srcObject = null;
    this._setState("stopped");
  }

  _headers(extra = {}) {
    const token = this.opts.token || storedToken();
    return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
  }

  _setState(state, detail = "") {
    if (state === this.state && !detail) return;
    this.state = state;
    if (this.opts.onState) this.opts.onState(state, detail);
  }

  async _connect() {
    const gen = ++this._gen;
    this._setState(this.sessions ? "reconnecting" : "connecting");
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    const timing = { offer: performance.now() };
    this.timing = timing;
    this._progress = { frames: 0, at: performance.now(), connectedAt: 0, playing: false };
    pc.addTransceiver("video", { direction: "recvonly" });
    const late = { posted: false, queue: [], url: null };
    pc.onicecandidate = (ev) => {
      if (!late.posted) return; // still going into the offer
      late.queue.push(ev.candidate ? `a=${ev.candidate.candidate}` : "a=end-of-candidates");
      this._trickle(gen, pc, late);
    };
    pc.ontrack = (ev) => {
      const stream = ev.streams && ev.streams[0] ? ev.streams[0] : new MediaStream([ev.track]);
      this.video.muted = true;
      this.video.playsInline = true;
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
      if (this.video.requestVideoFrameCallback) {
        this.video.requestVideoFrameCallback(() => {
          if (gen === this._gen) timing.firstFrame = performance.now();
        });
      }
      ev.track.addEventListener("ended", () => this._fail(gen, "track ended"));
    };
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === "connected") {
        this._progress.connectedAt = performance.now();
        this._progress.at = performance.now();
        if (!this._progress.playing) this._setState("connected");
      } else if (s === "failed" || s === "closed") {
        this._fail(gen, `connection ${s}`);
      } else if (s === "disconnected") {
        // Often transient; fail only if it does not come back.
        setTimeout(() => {
          if (pc.connectionState === "disconnected") this._fail(gen, "connection lost");
        }, 3000);
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.opts.gatherTimeoutMs);
      timing.gathered = performance.now();
      if (gen !== this._gen) return;
      late.posted = pc.iceGatheringState !== "complete";
      const r = await fetch(this.url, {
        method: "POST",
        headers: this._headers({ "Content-Type": SDP }),
        body: pc.localDescription.sdp,
        credentials: "same-origin",
      });
      if (gen !== this._gen) return;
      if (r.status !== 201) {
        let detail = `HTTP ${r.status}`;
        try {
          const j = await r.json();
          if (j.detail) detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail);
        } catch {
          /* not JSON */
        }
        const retryAfter = parseFloat(r.headers.get("Retry-After") || "");
        this._fail(gen, detail, {
          state: r.status === 503 ? "offline" : "error",
          // Auth and unknown-camera errors will not fix themselves quickly.
          delayMs: [401, 403, 404].includes(r.status) ? 10000 : retryAfter * 1000 || undefined,
        });
        return;
      }
      this.sessions += 1;
      timing.answer = performance.now();
      const links = parseIceLinks(r.headers.get("Link"));
      if (links.length) this.iceServers = links;
      const loc = r.headers.get("Location");
      this.location = loc ? new URL(loc, new URL(this.url, location.href)).href : null;
      late.url = this.location;
      late.etag = r.headers.get("ETag");
      // What the gateway chose for this offer (passthrough, sub-stream or transcode).
      this.served = { variant: r.headers.get("X-Stream-Variant") || "", codec: r.headers.get("X-Stream-Codec") || "" };
      if (this.opts.onServed) this.opts.onServed(this.served);
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      this._trickle(gen, pc, late);
      this._watch(gen);
    } catch (err) {
      this._fail(gen, String((err && err.message) || err));
    }
  }

  // Send candidates found after the offer went out (RFC 9725 §4.3.1).
  async _trickle(gen, pc, late) {
    if (!late.url || !late.queue.length || late.sending) return;
    late.sending = true;
    const sdp = pc.localDescription.sdp;
    const ufrag = (sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
    const pwd = (sdp.match(/a=ice-pwd:(\S+)/) || [])[1];
    const mid = (sdp.match(/a=mid:(\S+)/) || [])[1];
    while (late.queue.length && gen === this._gen) {
      const lines = late.queue.splice(0);
      const frag = [`a=ice-ufrag:${ufrag}`, `a=ice-pwd:${pwd}`, `a=mid:${mid}`, ...lines].join("\r\n") + "\r\n";
      const headers = this._headers({ "Content-Type": "application/trickle-ice-sdpfrag" });
      if (late.etag) headers["If-Match"] = late.etag;
      try {
        await fetch(late.url, { method: "PATCH", headers, body: frag, credentials: "same-origin" });
      } catch {
        break; // the offer's candidates and peer-reflexive ones still work
      }
    }
    late.sending = false;
  }

  async _watch(gen) {
    let last = null;
    while (gen === this._gen && this._running) {
      await sleep(this.opts.statsIntervalMs);
      if (gen !== this._gen || !this.pc) return;
      let inbound = null;
      try {
        const report = await this.pc.getStats();
        report.forEach((s) => {
          if (s.type === "inbound-rtp" && (s.kind === "video" || s.mediaType === "video")) inbound = s;
        });
      } catch {
        continue;
      }
      if (gen !== this._gen) return;
      const now = performance.now();
      const p = this._progress;
      if (inbound) {
        const frames = inbound.framesDecoded || 0;
        const kbps =
          last && inbound.timestamp > last.timestamp
            ? ((inbound.bytesReceived - last.bytesReceived) * 8) / (inbound.timestamp - last.timestamp)
            : 0;
        const stats = {
          fps: inbound.framesPerSecond || 0,
          kbps: Math.round(kbps),
          framesDecoded: frames,
          framesDropped: inbound.framesDropped || 0,
          packetsLost: inbound.packetsLost || 0,
          width: inbound.frameWidth || this.video.videoWidth || 0,
          height: inbound.frameHeight || this.video.videoHeight || 0,
          sessions: this.sessions,
        };
        last = inbound;
        this.lastStats = stats;
        if (this.opts.onStats) this.opts.onStats(stats);
        if (frames > p.frames) {
          p.frames = frames;
          p.at = now;
          if (!p.playing) {
            p.playing = true;
            this._backoff = this.opts.minBackoffMs;
            this._setState("playing");
          }
        }
      }
      const limit = p.playing ? this.opts.stallMs : this.opts.firstFrameMs;
      if (now - p.at > limit) {
        this._fail(gen, p.playing ? "no video (stalled)" : "no video after connecting");
        return;
      }
    }
  }

  _fail(gen, reason, { state = "reconnecting", delayMs } = {}) {
    if (gen !== this._gen || !this._running) return;
    this._gen += 1; // this attempt is over; late events from it are ignored
    this._teardown();
    const delay = delayMs ?? this._backoff * (0.8 + Math.random() * 0.4);
    this._backoff = Math.min(this._backoff * 2, this.opts.maxBackoffMs);
    this._setState(state, reason);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => {
      if (this._running) this._connect();
    }, delay);
  }

  _teardown() {
    const pc = this.pc;
    const loc = this.location;
    this.pc = null;
    this.location = null;
    if (loc) {
      // Best effort: the server also tears sessions down when the peer goes quiet.
      fetch(loc, { method: "DELETE", headers: this._headers(), credentials: "same-origin", keepalive: true }).catch(
        () => {},
      );
    }
    if (pc) {
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
  }
}
