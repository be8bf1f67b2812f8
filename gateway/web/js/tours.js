// Tours (轮巡): the wall pages through a tour's cameras, `layout` at a time, `dwell_s` per page.
// The running tour (id, page, paused) is kept per user in localStorage, so it survives moving
// around the page and resumes after a reload. A tile that cannot play is skipped with a note.
// The next page's sessions are opened PREOPEN_S before the switch in a hidden stage, so at the
// switch each tile takes a video that already has a picture instead of starting a session.
import { api, el } from "./api.js";
import { t } from "./i18n.js";
import { openPlayer } from "./wall.js";

const FAILED = ["offline", "error"];
const PREOPEN_S = 3;
const MAX_SWITCHES = 50;

export class TourRunner {
  constructor(wall, tree, user, { pick, start, pause, prev, next, stop, status }) {
    Object.assign(this, { wall, tree, user, pick, status });
    this.tours = [];
    this.tour = null;
    this.pages = [];
    this.page = 0;
    this.paused = false;
    this.timer = null;
    this.check = null;
    this.prepTimer = null;
    this.ahead = null; // { page, items: [{ ref, video, player }] }: the next page, opened ahead
    this.switches = []; // per switch: ms from the switch to each tile's next painted frame
    // Pre-opened videos must be in the document (and painted) to decode like a tile's.
    this.stage = el("div", { class: "tour-stage", "aria-hidden": "true" });
    document.body.append(this.stage);
    start.addEventListener("click", () => this.startPicked());
    pause.addEventListener("click", () => this.togglePause());
    prev.addEventListener("click", () => this.go(this.page - 1));
    next.addEventListener("click", () => this.go(this.page + 1));
    stop.addEventListener("click", () => this.stop());
  }

  key() { return `gw_tour_${this.user}`; }

  async load() {
    try { this.tours = await api("/api/v1/tours"); } catch { this.tours = []; }
    this.pick.replaceChildren(
      el("option", { value: "" }, this.tours.length ? t("choose_tour") : t("no_tours")),
      ...this.tours.map((x) => el("option", { value: String(x.id) }, `${x.shared ? "★ " : ""}${x.name}`)));
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(this.key()) || "null"); } catch { saved = null; }
    const tour = saved && this.tours.find((x) => x.id === saved.id);
    if (tour) this.begin(tour, Number(saved.page) || 0, Boolean(saved.paused));
  }

  // Items are camera refs or tree nodes (a village stands for every camera below it).
  expand(tour) {
    const refs = [];
    const nodes = [];
    const walk = (node) => { nodes.push(node); (node.children || []).forEach(walk); };
    if (this.tree.root) walk(this.tree.root);
    for (const item of tour.items) {
      if (this.tree.cameras.has(item)) { refs.push(item); continue; }
      const node = nodes.find((n) => n._prefix === item);
      if (node) refs.push(...this.tree.camerasUnder(node).map((c) => c.ref));
    }
    const unique = [...new Set(refs)];
    const pages = [];
    for (let i = 0; i < unique.length; i += tour.layout) pages.push(unique.slice(i, i + tour.layout));
    return pages;
  }

  startPicked() {
    const tour = this.tours.find((x) => String(x.id) === this.pick.value);
    if (!tour) { this.status.textContent = t("choose_tour"); return; }
    this.begin(tour, 0, false);
  }

  begin(tour, page, paused) {
    this.pages = this.expand(tour);
    if (!this.pages.length) {
      this.status.textContent = `${t("tour")} ${tour.name}${t("colon")}${t("tour_empty")}`;
      return;
    }
    this.tour = tour;
    this.paused = paused;
    this.pick.value = String(tour.id);
    this.go(page);
  }

  go(page) {
    if (!this.tour) return;
    const n = this.pages.length;
    this.page = ((page % n) + n) % n;
    const refs = this.pages[this.page];
    const at = performance.now();
    const ahead = this.ahead && this.ahead.page === this.page ? this.ahead.items : [];
    if (this.wall.layout !== this.tour.layout) this.wall.setLayout(this.tour.layout, { keep: false });
    this.wall.tiles.forEach((tile, i) => {
      if (!refs[i]) { tile.clear(); return; }
      if (tile.ref === refs[i] && tile.variant === "main") return;
      const ready = ahead.find((a) => a.ref === refs[i] && !a.used);
      if (ready) ready.used = true;
      tile.play(refs[i], "main", ready || null);
    });
    this.discard();
    this.measure(at);
    this.wall.container.dataset.tourPage = String(this.page);
    this.save();
    this.render();
    this.schedule();
    clearTimeout(this.check);
    // A tile that cannot play is cleared with a note, not left black for the whole dwell.
    this.check = setTimeout(() => this.skipFailed(), Math.min(8000, this.tour.dwell_s * 500));
  }

  skipFailed() {
    const failed = this.wall.tiles.filter((tile) => tile.ref && FAILED.includes(tile.node.dataset.state));
    if (!failed.length) return;
    const names = failed.map((tile) => this.tree.label(tile.ref));
    failed.forEach((tile) => tile.clear());
    this.status.textContent = `${this.statusText()} · ${t("tour_skipped")}${t("colon")}${names.join("、")}`;
  }

  schedule() {
    clearTimeout(this.timer);
    clearTimeout(this.prepTimer);
    if (!this.tour || this.paused) return;
    const dwell = this.tour.dwell_s;
    this.prepTimer = setTimeout(() => this.prepare(), Math.max(0, dwell - PREOPEN_S) * 1000);
    this.timer = setTimeout(() => this.go(this.page + 1), dwell * 1000);
  }

  // Open the next page's sessions now, in the hidden stage; cameras already on the wall stay.
  prepare() {
    if (!this.tour || this.pages.length < 2) return;
    const page = (this.page + 1) % this.pages.length;
    if (this.ahead && this.ahead.page === page) return;
    this.discard();
    const showing = new Set(this.wall.tiles.map((tile) => tile.ref));
    const items = this.pages[page].filter((ref) => !showing.has(ref)).map((ref) => {
      const video = el("video", { autoplay: true, muted: true, playsinline: true });
      video.muted = true;
      this.stage.append(video);
      return { ref, video, player: openPlayer(video, ref) };
    });
    this.ahead = { page, items };
  }

  discard() {
    for (const item of this.ahead?.items || []) {
      if (item.used) continue;
      item.player.stop();
      item.video.remove();
    }
    this.ahead = null;
  }

  // Switch → picture, per tile: the next frame each tile's video paints after the switch.
  measure(at) {
    const times = [];
    this.switches.push(times);
    if (this.switches.length > MAX_SWITCHES) this.switches.shift();
    for (const tile of this.wall.tiles) {
      if (!tile.ref || !tile.video.requestVideoFrameCallback) continue;
      tile.video.requestVideoFrameCallback(() => times.push(Math.round(performance.now() - at)));
    }
  }

  togglePause() {
    if (!this.tour) return;
    this.paused = !this.paused;
    if (this.paused) this.discard();
    this.save();
    this.render();
    this.schedule();
  }

  stop() {
    clearTimeout(this.timer);
    clearTimeout(this.check);
    clearTimeout(this.prepTimer);
    this.discard();
    this.tour = null;
    localStorage.removeItem(this.key());
    delete this.wall.container.dataset.tourPage;
    this.status.textContent = "";
  }

  save() {
    localStorage.setItem(this.key(), JSON.stringify({ id: this.tour.id, page: this.page, paused: this.paused }));
  }

  statusText() {
    const state = this.paused ? t("tour_paused") : t("tour_running");
    return `${t("tour")} ${this.tour.name} · ${this.page + 1}/${this.pages.length} · ${state}`;
  }

  render() { this.status.textContent = this.statusText(); }
}
