// Playback (录像回放): a day's timeline of segments, gaps and events; click to play, speed, download.
import { api, el, fmtTime } from "./api.js";
import { t } from "./i18n.js";

const DAY_MS = 86400000;

function enc(ref) { return ref.split("/").map(encodeURIComponent).join("/"); }

export function recordingsUrl(ref, start, end) {
  const q = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
  return ref.includes("/") ? `/api/v1/tree/recordings/${enc(ref)}?${q}` : `/api/v1/recordings?camera=${encodeURIComponent(ref)}&${q}`;
}

export function clipUrl(ref, start, end, download = false) {
  const q = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}${download ? "&download=1" : ""}`;
  const token = localStorage.getItem("gw_token");
  const auth = token ? `&access_token=${encodeURIComponent(token)}` : "";
  return ref.includes("/")
    ? `/api/v1/tree/recordings/${enc(ref)}/clip.mp4?${q}${auth}`
    : `/api/v1/recordings/${enc(ref)}/clip.mp4?${q}${auth}`;
}

export class Playback {
  constructor(container, tree) {
    this.container = container;
    this.tree = tree;
    this.data = { segments: [], gaps: [], events: [] };
    this.camera = el("select", { class: "pb-camera" });
    this.date = el("input", { type: "date", class: "pb-date" });
    this.speed = el("select", { class: "pb-speed" }, ...[0.5, 1, 2, 4, 8].map((s) => el("option", { value: String(s), selected: s === 1 }, `${s}×`)));
    this.download = el("a", { class: "pb-download", download: "" }, t("download"));
    this.info = el("span", { class: "pb-info" });
    this.canvas = el("canvas", { width: 1200, height: 56 });
    this.timeline = el("div", { class: "timeline", title: t("timeline") }, this.canvas);
    this.video = el("video", { controls: true, autoplay: true, muted: true, class: "pb-player" });
    this.camera.addEventListener("change", () => this.load());
    this.date.addEventListener("change", () => this.load());
    this.speed.addEventListener("change", () => { this.video.playbackRate = Number(this.speed.value); });
    this.video.addEventListener("loadedmetadata", () => { this.video.playbackRate = Number(this.speed.value); });
    this.timeline.addEventListener("click", (e) => {
      const rect = this.canvas.getBoundingClientRect();
      const at = new Date(this.dayStart().getTime() + ((e.clientX - rect.left) / rect.width) * DAY_MS);
      this.playAt(at);
    });
    container.replaceChildren(
      el("h3", {}, t("playback_title")),
      el("div", { class: "pb-controls" },
        el("label", {}, t("camera"), " ", this.camera), el("label", {}, t("date"), " ", this.date),
        el("label", {}, t("speed"), " ", this.speed), this.download, this.info),
      this.timeline,
      el("div", { class: "pb-video" }, this.video));
  }

  refreshCameras() {
    const current = this.camera.value;
    this.camera.replaceChildren(el("option", { value: "" }, t("select_camera")),
      ...[...this.tree.cameras.values()].map((c) => el("option", { value: c.ref, selected: c.ref === current }, c.name || c.ref)));
    if (!this.date.value) this.date.value = new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 10);
  }

  dayStart() {
    const [y, m, d] = this.date.value.split("-").map(Number);
    return new Date(y, m - 1, d);
  }

  async load() {
    const ref = this.camera.value;
    if (!ref || !this.date.value) return;
    const start = this.dayStart();
    try {
      this.data = await api(recordingsUrl(ref, start, new Date(start.getTime() + DAY_MS)));
    } catch (err) {
      this.data = { segments: [], gaps: [], events: [] };
      this.info.textContent = `${t("failed")}: ${err.message}`;
    }
    if (!this.data.segments.length) this.info.textContent = t("no_recordings");
    else this.info.textContent = `${this.data.segments.length} · ${fmtTime(this.data.segments[0].start)} …`;
    this.draw();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const w = this.canvas.width, h = this.canvas.height, t0 = this.dayStart().getTime();
    const x = (iso) => ((new Date(iso).getTime() - t0) / DAY_MS) * w;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#8a9bb0";
    ctx.font = "10px sans-serif";
    for (let hr = 0; hr <= 24; hr += 2) { const px = (hr / 24) * w; ctx.fillRect(px, h - 8, 1, 8); ctx.fillText(`${hr}:00`, px + 2, h - 1); }
    ctx.fillStyle = "#36c26b";
    for (const s of this.data.segments) ctx.fillRect(x(s.start), 6, Math.max(1, x(s.end) - x(s.start)), 22);
    ctx.fillStyle = "#e5484d";
    for (const g of this.data.gaps) ctx.fillRect(x(g.start), 6, Math.max(1, x(g.end) - x(g.start)), 22);
    ctx.fillStyle = "#f0a020";
    for (const ev of this.data.events) ctx.fillRect(x(ev.start), 30, 2, 12);
  }

  playAt(at, end) {
    const ref = this.camera.value;
    if (!ref) return;
    const seg = this.data.segments.find((s) => new Date(s.end) > at) || null;
    const from = seg && new Date(seg.start) > at ? new Date(seg.start) : at;
    const to = end || new Date(from.getTime() + 10 * 60000);
    this.video.src = clipUrl(ref, from, to);
    this.download.href = clipUrl(ref, from, to, true);
    this.info.textContent = `${fmtTime(from.toISOString())} → ${fmtTime(to.toISOString())}`;
  }

  // From an alarm: the event with a little before and after.
  async openEvent(ev) {
    this.refreshCameras();
    this.camera.value = ev.type === "linkage" ? (ev.data?.cameras || [ev.camera])[0] : ev.camera;
    const start = new Date(new Date(ev.start).getTime() - 5000);
    const end = new Date((ev.end ? new Date(ev.end).getTime() : Date.now()) + 5000);
    const local = new Date(start.getTime() - start.getTimezoneOffset() * 60000);
    this.date.value = local.toISOString().slice(0, 10);
    await this.load();
    this.playAt(start, end);
  }
}
