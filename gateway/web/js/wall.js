// Video wall (视频墙): 1/4/9/16 split, drag cameras or tree nodes on, one WHEP player per tile.
import { api, authHeaders, el } from "./api.js";
import { t } from "./i18n.js";
import { DRAG_TYPE } from "./tree.js";
import { WhepPlayer } from "./whep.js";

const LAYOUTS = [1, 4, 9, 16];

function enc(ref) { return ref.split("/").map(encodeURIComponent).join("/"); }

function whepUrl(ref, variant) {
  return `/api/v1/streams/${enc(ref)}/whep${variant === "low" ? "?variant=low" : ""}`;
}

export function ptzPath(ref) {
  return ref.includes("/") ? `/api/v1/tree/cameras/${enc(ref)}/ptz` : `/api/v1/cameras/${enc(ref)}/ptz`;
}

// Receive-side latency (jitter buffer + decode), ms, from one inbound-rtp report.
function receiveLatencyMs(s, prev) {
  if (!prev) return null;
  const emitted = (s.jitterBufferEmittedCount || 0) - (prev.jitterBufferEmittedCount || 0);
  const decoded = (s.framesDecoded || 0) - (prev.framesDecoded || 0);
  if (emitted <= 0 || decoded <= 0) return null;
  const jitter = ((s.jitterBufferDelay || 0) - (prev.jitterBufferDelay || 0)) / emitted;
  const decode = ((s.totalDecodeTime || 0) - (prev.totalDecodeTime || 0)) / decoded;
  return (jitter + decode) * 1000;
}

// A WHEP player for `video`, started. Tours use it to open a page's sessions ahead.
export function openPlayer(video, ref, variant = "main", callbacks = {}) {
  const token = (authHeaders().Authorization || "").replace(/^Bearer /, "") || undefined;
  const player = new WhepPlayer(video, whepUrl(ref, variant), { token, ...callbacks });
  player.start();
  return player;
}

// The tile's label for what the gateway serves: passthrough, the camera's sub-stream or the transcode.
function servedLabel(served, asked) {
  const codec = served.codec === "h265" ? "H.265" : "H.264";
  if (served.variant === "low" || asked === "low") return t("low_stream");
  if (served.variant === "sub") return `${codec} ${t("served_sub")}`;
  if (served.variant === "h264") return `H.264 ${t("served_transcode")}`;
  if (served.variant === "main") return `${codec} ${t("served_passthrough")}`;
  return "";
}

class Tile {
  constructor(wall, index) {
    this.wall = wall;
    this.index = index;
    this.ref = null;
    this.variant = "main";
    this.served = null; // {variant, codec} from the WHEP answer
    this.player = null;
    this.stats = { fps: 0, kbps: 0, latencyMs: null, framesDecoded: 0 };
    this._inbound = null;
    this.video = el("video", { autoplay: true, muted: true, playsinline: true });
    this.video.muted = true;
    this.nameEl = el("span", { class: "name" });
    this.statusEl = el("span", { class: "dot unknown" });
    this.variantEl = el("span", { class: "variant" });
    this.statsEl = el("span", { class: "stats" });
    this.stateEl = el("span", { class: "state" });
    this.empty = el("div", { class: "empty" }, el("span", { class: "num" }, String(index + 1)), el("span", {}, t("drop_here")));
    this.variantBtn = el("button", { class: "variant-btn", title: t("variant_hint"), onclick: () => this.toggleVariant() }, t("low_stream"));
    this.ptzBtn = el("button", { class: "ptz-btn", onclick: () => this.togglePtz(), hidden: true }, t("ptz"));
    this.tools = el("div", { class: "tools" },
      this.variantBtn, this.ptzBtn,
      el("button", { class: "fs-btn", onclick: () => this.fullscreen() }, t("fullscreen")),
      el("button", { class: "close-btn", onclick: () => this.clear() }, t("close")));
    this.overlay = el("div", { class: "overlay", hidden: true }, this.statusEl, this.nameEl, this.variantEl, this.statsEl);
    this.node = el("div", { class: "tile", dataset: { index: String(index) } },
      this.video, this.empty, this.overlay,
      this.stateEl, this.tools);
    this.tools.hidden = true;
    this.node.addEventListener("dblclick", (e) => { if (!e.target.closest("button")) this.fullscreen(); });
    this.node.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes(DRAG_TYPE)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      this.node.classList.add("drag-over");
    });
    this.node.addEventListener("dragleave", () => this.node.classList.remove("drag-over"));
    this.node.addEventListener("drop", (e) => {
      e.preventDefault();
      this.node.classList.remove("drag-over");
      let refs = [];
      try { refs = JSON.parse(e.dataTransfer.getData(DRAG_TYPE) || "[]"); } catch { refs = []; }
      if (!Array.isArray(refs)) return;
      if (refs.length === 1) this.play(String(refs[0]));
      else if (refs.length > 1) this.wall.fill(refs.map(String), this.index);
      this.wall.changed();
    });
  }

  // `preopened` ({ video, player }, see openPlayer): a session opened ahead (a tour's next
  // page) whose video already has a picture; it takes this tile's place instead of a new one.
  play(ref, variant = "main", preopened = null) {
    this.stop();
    this.ref = ref;
    this.variant = variant === "low" ? "low" : "main";
    const cam = this.wall.tree.cameras.get(ref) || { name: ref };
    this.nameEl.textContent = this.wall.tree.label(ref);
    this.node.title = [cam.name, cam.location, ref].filter(Boolean).join(" · ");
    this.statusEl.className = `dot ${cam.status || "unknown"}`;
    this.variantEl.textContent = this.variant === "low" ? t("low_stream") : "";
    this.variantEl.hidden = this.variant !== "low";
    this.variantBtn.textContent = this.variant === "low" ? t("main_stream") : t("low_stream");
    this.ptzBtn.hidden = !cam.ptz;
    this.tools.hidden = false;
    this.overlay.hidden = false;
    this.empty.hidden = true;
    this.stateEl.textContent = t("connecting");
    this.statsEl.textContent = "";
    this.stats = { fps: 0, kbps: 0, latencyMs: null, framesDecoded: 0 };
    this._inbound = null;
    this.node.dataset.camera = ref;
    this.node.dataset.variant = this.variant;
    this.node.dataset.framesDecoded = "0";
    const onState = (state, detail) => this.onState(state, detail);
    const onStats = (s) => this.onStats(s);
    const onServed = (s) => this.onServed(s);
    this.served = null;
    delete this.node.dataset.served;
    if (preopened) {
      this.node.replaceChild(preopened.video, this.video); // same task: it keeps playing
      this.video = preopened.video;
      this.player = preopened.player;
      Object.assign(this.player.opts, { onState, onStats, onServed });
      this.onState(this.player.state);
      if (this.player.served) this.onServed(this.player.served);
      return;
    }
    this.player = openPlayer(this.video, ref, this.variant, { onState, onStats, onServed });
  }

  onState(state, detail = "") {
    const label = {
      connecting: t("connecting"), connected: "", playing: "", reconnecting: t("reconnecting"),
      offline: t("offline"), error: t("error"), stopped: "",
    }[state];
    this.stateEl.textContent = label === undefined ? state : label;
    this.stateEl.title = detail || "";
    this.node.dataset.state = state;
    if (!["playing", "connected"].includes(state)) {
      this.statsEl.textContent = ""; // old figures would look live
      this.stats = { ...this.stats, fps: 0, kbps: 0, latencyMs: null };
    }
    const cam = this.wall.tree.cameras.get(this.ref);
    const status = state === "playing" ? "online" : state === "offline" ? "offline" : cam?.status || "unknown";
    this.statusEl.className = `dot ${status}`;
  }

  // What the gateway sends this tile ("H.265 直通", "H.264 子码流", "转码"), from the WHEP answer.
  onServed(served) {
    this.served = served;
    this.node.dataset.served = served.variant || "";
    this.node.dataset.codec = served.codec || "";
    this.variantEl.textContent = servedLabel(served, this.variant);
    this.variantEl.hidden = !this.variantEl.textContent;
  }

  onStats(s) {
    this.stats = { ...this.stats, fps: s.fps || 0, kbps: s.kbps || 0, framesDecoded: s.framesDecoded || 0 };
    this.node.dataset.framesDecoded = String(this.stats.framesDecoded);
    this.renderStats();
    this.sampleLatency();
  }

  async sampleLatency() {
    const pc = this.player && this.player.pc;
    if (!pc) return;
    let inbound = null;
    try {
      (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") inbound = r; });
    } catch { return; }
    if (!inbound) return;
    const ms = receiveLatencyMs(inbound, this._inbound);
    this._inbound = inbound;
    if (ms !== null) { this.stats.latencyMs = ms; this.renderStats(); }
  }

  renderStats() {
    const s = this.stats;
    const parts = [`${Math.round(s.fps)} ${t("fps_unit")}`, `${Math.round(s.kbps)} kbps`];
    if (s.latencyMs !== null) parts.push(`${t("latency")} ${Math.round(s.latencyMs)} ms`);
    this.statsEl.textContent = parts.join(" · ");
  }

  toggleVariant() {
    if (!this.ref) return;
    this.play(this.ref, this.variant === "low" ? "main" : "low");
    this.wall.changed();
  }

  togglePtz() {
    const existing = this.node.querySelector(".ptz");
    if (existing) { existing.remove(); return; }
    const ref = this.ref;
    const note = el("div", { class: "ptz-note" });
    const send = (body) => api(ptzPath(ref), { method: "POST", body })
      .then(() => { note.textContent = ""; })
      .catch((err) => { note.textContent = `${t("failed")}: ${err.message}`; });
    // Continuous move while the button is held; stop on release (or when the pointer leaves).
    const mv = (pan, tilt, zoom, label, title) => {
      const b = el("button", { title, dataset: { ptz: label } }, label);
      let held = false;
      b.addEventListener("pointerdown", () => { held = true; send({ action: "move", pan, tilt, zoom }); });
      const release = () => { if (held) { held = false; send({ action: "stop" }); } };
      b.addEventListener("pointerup", release);
      b.addEventListener("pointerleave", release);
      return b;
    };
    const presets = el("select", { class: "ptz-presets", title: t("presets") }, el("option", { value: "" }, t("presets")));
    presets.addEventListener("change", () => {
      if (presets.value) send({ action: "goto_preset", preset: presets.value });
    });
    const pad = el("div", { class: "ptz", role: "group", "aria-label": t("ptz") },
      el("div", { class: "ptz-grid" },
        mv(-0.5, 0.5, 0, "↖", t("ptz_up_left")), mv(0, 0.5, 0, "▲", t("ptz_up")), mv(0.5, 0.5, 0, "↗", t("ptz_up_right")),
        mv(-0.5, 0, 0, "◀", t("ptz_left")), el("button", { title: t("ptz_stop"), onclick: () => send({ action: "stop" }) }, "■"), mv(0.5, 0, 0, "▶", t("ptz_right")),
        mv(-0.5, -0.5, 0, "↙", t("ptz_down_left")), mv(0, -0.5, 0, "▼", t("ptz_down")), mv(0.5, -0.5, 0, "↘", t("ptz_down_right"))),
      el("div", { class: "ptz-zoom" }, mv(0, 0, 0.5, "+", t("zoom_in")), mv(0, 0, -0.5, "−", t("zoom_out"))),
      presets, note);
    this.node.append(pad);
    // Presets (预置位): the camera's own list, read through the tree for remote cameras.
    const url = ref.includes("/") ? `/api/v1/tree/cameras/${enc(ref)}/presets` : `/api/v1/cameras/${enc(ref)}/presets`;
    api(url).then((list) => {
      for (const p of list || []) presets.append(el("option", { value: p.token }, p.name || p.token));
    }).catch(() => {});
  }

  fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (this.ref) this.node.requestFullscreen?.().catch(() => {});
  }

  highlight(on) { this.node.classList.toggle("highlight", on); }

  relabel() {
    this.empty.lastChild.textContent = t("drop_here");
    this.variantBtn.textContent = this.variant === "low" ? t("main_stream") : t("low_stream");
    this.variantBtn.title = t("variant_hint");
    this.ptzBtn.textContent = t("ptz");
    this.tools.querySelector(".fs-btn").textContent = t("fullscreen");
    this.tools.querySelector(".close-btn").textContent = t("close");
    if (this.ref) {
      this.variantEl.textContent = this.served ? servedLabel(this.served, this.variant) : this.variant === "low" ? t("low_stream") : "";
      this.onState(this.node.dataset.state || "connecting");
      this.renderStats();
    }
    this.node.querySelector(".ptz")?.remove();
  }

  stop() {
    if (this.player) { this.player.stop(); this.player = null; }
    this.node.querySelector(".ptz")?.remove();
  }

  clear() {
    this.stop();
    this.ref = null;
    this.video.srcObject = null;
    this.nameEl.textContent = "";
    this.statsEl.textContent = "";
    this.stateEl.textContent = "";
    this.variantEl.textContent = "";
    this.statusEl.className = "dot unknown";
    this.ptzBtn.hidden = true;
    this.tools.hidden = true;
    this.overlay.hidden = true;
    this.empty.hidden = false;
    this.node.removeAttribute("title");
    for (const k of ["camera", "framesDecoded", "state", "variant"]) delete this.node.dataset[k];
  }
}

export class VideoWall {
  constructor(container, tree, user) {
    this.container = container;
    this.tree = tree;
    this.user = user;
    this.tiles = [];
    this.layout = 4;
  }

  setLayout(n, { keep = true } = {}) {
    if (!LAYOUTS.includes(n)) n = 4;
    const kept = keep ? this.tiles.map((tile) => tile.ref && { ref: tile.ref, variant: tile.variant }) : [];
    for (const tile of this.tiles) tile.stop();
    this.layout = n;
    this.container.className = `wall layout-${n}`;
    this.tiles = Array.from({ length: n }, (_, i) => new Tile(this, i));
    this.container.replaceChildren(...this.tiles.map((tile) => tile.node));
    kept.slice(0, n).forEach((k, i) => k && this.tiles[i].play(k.ref, k.variant));
    document.querySelectorAll(".layout-btn").forEach((b) => b.classList.toggle("active", Number(b.dataset.layout) === n));
  }

  // Put cameras on the wall from tile `start`, growing the layout if they do not fit.
  fill(refs, start = 0) {
    const need = start + refs.length;
    if (need > this.layout) {
      const n = LAYOUTS.find((k) => k >= need) || 16;
      this.setLayout(n);
      if (need > n) start = 0;
    }
    refs.slice(0, this.layout - start).forEach((ref, i) => this.tiles[start + i].play(ref));
  }

  open(refs) {
    const free = this.tiles.findIndex((tile) => !tile.ref);
    this.fill(refs, free < 0 ? 0 : free);
    this.changed();
  }

  // A linkage instruction: show exactly this group.
  showGroup(refs) {
    const n = LAYOUTS.find((k) => k >= refs.length) || 16;
    if (n !== this.layout) this.setLayout(n, { keep: false });
    this.tiles.forEach((tile, i) => {
      if (!refs[i]) tile.clear();
      else if (tile.ref !== refs[i]) tile.play(refs[i]);
      tile.highlight(true);
    });
    setTimeout(() => this.tiles.forEach((tile) => tile.highlight(false)), 10000);
  }

  highlightGroup(refs) {
    for (const tile of this.tiles) tile.highlight(refs.includes(tile.ref));
    setTimeout(() => this.tiles.forEach((tile) => tile.highlight(false)), 15000);
  }

  clearAll() { this.tiles.forEach((tile) => tile.clear()); }

  relabel() { this.tiles.forEach((tile) => tile.relabel()); }

  // Hook for "something changed"; the layout itself is saved when the operator says so.
  changed() {}

  storageKey() { return `gw_wall_${this.user}`; }

  snapshot() {
    return { layout: this.layout, tiles: this.tiles.map((tile) => tile.ref && { ref: tile.ref, variant: tile.variant }) };
  }

  // The layout is kept on the gateway, so it follows the operator to any workstation;
  // the browser's copy is the fallback when the gateway cannot be reached.
  async save(autoSwitch) {
    const state = { ...this.snapshot(), auto_switch: autoSwitch };
    localStorage.setItem(this.storageKey(), JSON.stringify(state));
    await api("/api/v1/ui/layout", { method: "PUT", body: state });
  }

  async restore() {
    let state = null;
    try {
      state = await api("/api/v1/ui/layout");
    } catch {
      try { state = JSON.parse(localStorage.getItem(this.storageKey()) || "null"); } catch { state = null; }
    }
    this.apply(state);
    return state;
  }

  apply(state) {
    this.setLayout(Number(state?.layout) || 4, { keep: false });
    (Array.isArray(state?.tiles) ? state.tiles : []).forEach((k, i) => {
      // A camera removed since the layout was saved leaves its tile empty.
      if (k && typeof k.ref === "string" && this.tiles[i] && this.tree.cameras.has(k.ref)) this.tiles[i].play(k.ref, k.variant);
    });
  }

  tileStats() {
    return this.tiles.map((tile) => ({ ref: tile.ref, variant: tile.variant, ...tile.stats, state: tile.node.dataset.state || "" }));
  }
}
