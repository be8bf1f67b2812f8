// Video wall (视频墙): 1/4/9/16 split, drag cameras or tree nodes on, WHEP per tile.
import { api, authHeaders, el } from "./api.js";
import { t } from "./i18n.js";
import { WhepPlayer } from "./whep.js";

const LAYOUTS = [1, 4, 9, 16];

function whepUrl(ref, variant) {
  const path = ref.split("/").map(encodeURIComponent).join("/");
  return `/api/v1/streams/${path}/whep${variant === "low" ? "?variant=low" : ""}`;
}

class Tile {
  constructor(wall, index) {
    this.wall = wall;
    this.index = index;
    this.ref = null;
    this.variant = "main";
    this.player = null;
    this.stats = { fps: 0, kbps: 0, latencyMs: null, framesDecoded: 0 };
    this.video = el("video", { autoplay: true, muted: true, playsinline: true });
    this.video.muted = true;
    this.nameEl = el("span", { class: "name" });
    this.statusEl = el("span", { class: "dot unknown" });
    this.statsEl = el("span", { class: "stats" });
    this.stateEl = el("span", { class: "state" });
    this.empty = el("div", { class: "empty" }, t("drop_here"));
    this.variantBtn = el("button", { onclick: () => this.toggleVariant() }, t("main_stream"));
    this.ptzBtn = el("button", { onclick: () => this.togglePtz(), hidden: true }, t("ptz"));
    this.tools = el("div", { class: "tools" },
      this.variantBtn, this.ptzBtn,
      el("button", { onclick: () => this.fullscreen() }, t("fullscreen")),
      el("button", { onclick: () => this.clear() }, t("close")));
    this.node = el("div", { class: "tile", dataset: { index: String(index) } },
      this.video, this.empty,
      el("div", { class: "overlay" }, this.statusEl, this.nameEl, this.statsEl),
      this.stateEl, this.tools);
    this.node.addEventListener("dblclick", () => this.fullscreen());
    this.node.addEventListener("dragover", (e) => { e.preventDefault(); this.node.classList.add("drag-over"); });
    this.node.addEventListener("dragleave", () => this.node.classList.remove("drag-over"));
    this.node.addEventListener("drop", (e) => {
      e.preventDefault();
      this.node.classList.remove("drag-over");
      const refs = JSON.parse(e.dataTransfer.getData("application/x-gw-cameras") || "[]");
      if (refs.length === 1) this.play(refs[0]);
      else if (refs.length > 1) this.wall.fill(refs, this.index);
    });
  }

  play(ref, variant = this.variant) {
    this.stop();
    this.ref = ref;
    this.variant = variant;
    const cam = this.wall.tree.cameras.get(ref) || { name: ref };
    this.nameEl.textContent = cam.name || ref;
    this.statusEl.className = `dot ${cam.status || "unknown"}`;
    this.variantBtn.textContent = variant === "low" ? t("low_stream") : t("main_stream");
    this.ptzBtn.hidden = !cam.ptz;
    this.empty.hidden = true;
    this.stateEl.textContent = t("connecting");
    this.node.dataset.camera = ref;
    const token = (authHeaders().Authorization || "").replace(/^Bearer /, "") || undefined;
    this.player = new WhepPlayer(this.video, whepUrl(ref, variant), {
      token,
      onState: (state) => this.onState(state),
      onStats: (s) => this.onStats(s),
    });
    this.player.start();
  }

  onState(state) {
    const label = { connecting: t("connecting"), playing: "", connected: "", reconnecting: t("reconnecting") }[state];
    this.stateEl.textContent = label === undefined ? state : label;
    this.node.dataset.state = state;
  }

  onStats(s) {
    this.stats = {
      fps: s.fps ?? s.framesPerSecond ?? 0,
      kbps: s.kbps ?? s.bitrateKbps ?? 0,
      latencyMs: s.latencyMs ?? null,
      framesDecoded: s.framesDecoded ?? 0,
    };
    const parts = [`${Math.round(this.stats.fps)} ${t("fps")}`, `${Math.round(this.stats.kbps)} kbit/s`];
    if (this.stats.latencyMs !== null) parts.push(`${Math.round(this.stats.latencyMs)} ms`);
    this.statsEl.textContent = parts.join(" · ");
    this.node.dataset.framesDecoded = String(this.stats.framesDecoded);
  }

  toggleVariant() { if (this.ref) this.play(this.ref, this.variant === "low" ? "main" : "low"); }

  togglePtz() {
    const existing = this.node.querySelector(".ptz");
    if (existing) { existing.remove(); return; }
    const send = (body) => api(ptzPath(this.ref), { method: "POST", body }).catch(() => {});
    const mv = (pan, tilt, zoom = 0) => ({
      onpointerdown: () => send({ action: "move", pan, tilt, zoom }),
      onpointerup: () => send({ action: "stop" }),
    });
    const pad = el("div", { class: "ptz" },
      el("span"), el("button", mv(0, 0.5), "▲"), el("span"),
      el("button", mv(-0.5, 0), "◀"), el("button", { onclick: () => send({ action: "stop" }) }, "■"), el("button", mv(0.5, 0), "▶"),
      el("button", { ...mv(0, 0, 0.5), title: t("zoom_in") }, "+"), el("button", mv(0, -0.5), "▼"), el("button", { ...mv(0, 0, -0.5), title: t("zoom_out") }, "−"));
    this.node.append(pad);
  }

  fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else this.node.requestFullscreen?.().catch(() => {});
  }

  highlight(on) { this.node.classList.toggle("highlight", on); }

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
    this.empty.hidden = false;
    delete this.node.dataset.camera;
    delete this.node.dataset.framesDecoded;
  }
}

export function ptzPath(ref) {
  const path = ref.split("/").map(encodeURIComponent).join("/");
  return ref.includes("/") ? `/api/v1/tree/cameras/${path}/ptz` : `/api/v1/cameras/${path}/ptz`;
}

export class VideoWall {
  constructor(container, tree, user) {
    this.container = container;
    this.tree = tree;
    this.user = user;
    this.tiles = [];
    this.layout = 4;
  }

  setLayout(n) {
    if (!LAYOUTS.includes(n)) n = 4;
    const keep = this.tiles.map((tile) => tile.ref && { ref: tile.ref, variant: tile.variant });
    for (const tile of this.tiles) tile.stop();
    this.layout = n;
    this.container.className = `wall layout-${n}`;
    this.tiles = Array.from({ length: n }, (_, i) => new Tile(this, i));
    this.container.replaceChildren(...this.tiles.map((tile) => tile.node));
    keep.slice(0, n).forEach((k, i) => k && this.tiles[i].play(k.ref, k.variant));
    document.querySelectorAll(".layout-btn").forEach((b) => b.classList.toggle("active", Number(b.dataset.layout) === n));
  }

  // Put cameras on the wall from tile `start`, growing the layout if they do not fit.
  fill(refs, start = 0) {
    const need = start + refs.length;
    if (need > this.layout) this.setLayout(LAYOUTS.find((n) => n >= need) || 16);
    refs.slice(0, this.layout - start).forEach((ref, i) => this.tiles[start + i].play(ref));
  }

  open(refs) {
    const free = this.tiles.findIndex((tile) => !tile.ref);
    this.fill(refs, free < 0 ? 0 : free);
  }

  // A linkage instruction: show exactly this group.
  showGroup(refs) {
    const n = LAYOUTS.find((k) => k >= refs.length) || 16;
    this.setLayout(n);
    this.tiles.forEach((tile, i) => (refs[i] ? tile.play(refs[i]) : tile.clear()));
  }

  highlightGroup(refs) {
    for (const tile of this.tiles) tile.highlight(refs.includes(tile.ref));
    setTimeout(() => this.tiles.forEach((tile) => tile.highlight(false)), 15000);
  }

  clearAll() { this.tiles.forEach((tile) => tile.clear()); }

  storageKey() { return `gw_wall_${this.user}`; }

  save() {
    const state = { layout: this.layout, tiles: this.tiles.map((tile) => tile.ref && { ref: tile.ref, variant: tile.variant }) };
    localStorage.setItem(this.storageKey(), JSON.stringify(state));
  }

  restore() {
    let state = null;
    try { state = JSON.parse(localStorage.getItem(this.storageKey()) || "null"); } catch { state = null; }
    this.setLayout(state?.layout || 4);
    (state?.tiles || []).forEach((k, i) => k && this.tiles[i] && this.tiles[i].play(k.ref, k.variant));
  }

  tileStats() {
    return this.tiles.map((tile) => ({ ref: tile.ref, ...tile.stats, state: tile.node.dataset.state || "" }));
  }
}
