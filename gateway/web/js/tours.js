// Tours (轮巡): the wall pages through a tour's cameras, `layout` at a time, `dwell_s` per page.
// The running tour (id, page, paused) is kept per user in localStorage, so it survives moving
// around the page and resumes after a reload. A tile that cannot play is skipped with a note.
import { api, el } from "./api.js";
import { t } from "./i18n.js";

const FAILED = ["offline", "error"];

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
    if (this.wall.layout !== this.tour.layout) this.wall.setLayout(this.tour.layout, { keep: false });
    this.wall.tiles.forEach((tile, i) => {
      if (!refs[i]) tile.clear();
      else if (tile.ref !== refs[i]) tile.play(refs[i]);
    });
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
    if (this.tour && !this.paused) this.timer = setTimeout(() => this.go(this.page + 1), this.tour.dwell_s * 1000);
  }

  togglePause() {
    if (!this.tour) return;
    this.paused = !this.paused;
    this.save();
    this.render();
    this.schedule();
  }

  stop() {
    clearTimeout(this.timer);
    clearTimeout(this.check);
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
