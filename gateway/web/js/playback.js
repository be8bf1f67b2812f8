// Playback (录像回放): a timeline of segments, gaps and events (a day, zoomable); click to play,
// speed, download the clip; opened from an alarm at the alarm's moment.
import { api, el, fmtTime } from "./api.js";
import { t } from "./i18n.js";

const DAY_MS = 86400000;

function enc(ref) { return ref.split("/").map(encodeURIComponent).join("/"); }

export function recordingsUrl(ref, start, end) {
  const q = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}`;
  return ref.includes("/") ? `/api/v1/tree/recordings/${enc(ref)}?${q}` : `/api/v1/recordings?camera=${encodeURIComponent(ref)}&${q}`;
}

// The local API gives segments, gaps and events at once; a remote camera's gateway gives its
// segments only (through the tree), so gaps come from between them and events from here.
async function fetchTimeline(ref, start, end) {
  const data = await api(recordingsUrl(ref, start, end));
  if (!ref.includes("/")) return { segments: data.segments || [], gaps: data.gaps || [], events: data.events || [] };
  const segments = (data.recordings || data.segments || []).filter((s) => s.start && s.end)
    .sort((a, b) => new Date(a.start) - new Date(b.start));
  const gaps = [];
  for (let i = 1; i < segments.length; i++) {
    const prevEnd = new Date(segments[i - 1].end), next = new Date(segments[i].start);
    if (next - prevEnd > 1500) gaps.push({ start: segments[i - 1].end, end: segments[i].start });
  }
  const q = `camera=${encodeURIComponent(ref)}&since=${encodeURIComponent(start.toISOString())}&until=${encodeURIComponent(end.toISOString())}&limit=500`;
  const events = await api(`/api/v1/events?${q}`).catch(() => []);
  return { segments, gaps, events: events.reverse() };
}

// Cameras record H.265; a browser without an H.265 decoder asks for H.265 footage as H.264
// (transcoded once by the gateway, `codec=h264`). Downloads stay as recorded.
const HEVC_TYPE = 'video/mp4; codecs="hvc1.1.6.L93.B0"';
export const PLAYS_HEVC = Boolean((window.MediaSource && MediaSource.isTypeSupported(HEVC_TYPE))
  || document.createElement("video").canPlayType(HEVC_TYPE) === "probably");

// An H.264 copy is made before it plays: ask for a minute at a time.
const TRANSCODE_CHUNK_MS = 60000;

export function clipUrl(ref, start, end, download = false, h264 = false) {
  const codec = h264 && !download ? "&codec=h264" : "";
  const q = `start=${encodeURIComponent(start.toISOString())}&end=${encodeURIComponent(end.toISOString())}${download ? "&download=1" : ""}${codec}`;
  const token = localStorage.getItem("gw_token");
  const auth = token ? `&access_token=${encodeURIComponent(token)}` : "";
  return ref.includes("/")
    ? `/api/v1/tree/recordings/${enc(ref)}/clip.mp4?${q}${auth}`
    : `/api/v1/recordings/${enc(ref)}/clip.mp4?${q}${auth}`;
}

const SPANS = [DAY_MS, 6 * 3600000, 3600000, 600000]; // timeline zoom levels

function label(d, span) {
  const p = (n) => String(n).padStart(2, "0");
  return span > 3600000 ? `${p(d.getHours())}:${p(d.getMinutes())}` : `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export class Playback {
  constructor(container, tree) {
    this.container = container;
    this.tree = tree;
    this.data = { segments: [], gaps: [], events: [] };
    this.viewStart = null; // the timeline shows [viewStart, viewStart + span)
    this.span = DAY_MS;
    this.camera = el("select", { class: "pb-camera" });
    this.date = el("input", { type: "date", class: "pb-date" });
    this.zoom = el("select", { class: "pb-zoom" }, ...SPANS.map((ms) =>
      el("option", { value: String(ms) }, ms >= 3600000 ? `${ms / 3600000} ${t("hours")}` : `${ms / 60000} ${t("minutes")}`)));
    this.speed = el("select", { class: "pb-speed" }, ...[0.5, 1, 2, 4, 8].map((s) => el("option", { value: String(s), selected: s === 1 }, `${s}×`)));
    this.download = el("a", { class: "pb-download button", download: "" }, t("download"));
    this.download.hidden = true;
    // the evidence export page (录像导出), preset with this camera and span
    this.exportLink = el("a", { class: "pb-export button", target: "_blank" }, t("export_span"));
    this.exportLink.hidden = true;
    this.info = el("span", { class: "pb-info" });
    this.canvas = el("canvas", { width: 1400, height: 64 });
    this.cursor = null;
    this.timeline = el("div", { class: "timeline", title: t("timeline_hint") }, this.canvas);
    this.video = el("video", { controls: true, autoplay: true, muted: true, class: "pb-player" });
    this.legend = el("div", { class: "pb-legend" },
      el("span", { class: "sw seg" }), t("recorded"), el("span", { class: "sw gap" }), t("gap"), el("span", { class: "sw ev" }), t("event"));
    this.camera.addEventListener("change", () => this.load());
    this.date.addEventListener("change", () => { this.viewStart = null; this.load(); });
    this.zoom.addEventListener("change", () => this.setSpan(Number(this.zoom.value)));
    this.speed.addEventListener("change", () => { this.video.playbackRate = Number(this.speed.value); });
    this.video.addEventListener("loadedmetadata", () => { this.video.playbackRate = Number(this.speed.value); });
    this.video.addEventListener("error", () => { if (this.video.src) this.info.textContent = t("no_recordings"); });
    this.timeline.addEventListener("click", (e) => {
      const rect = this.canvas.getBoundingClientRect();
      this.playAt(new Date(this.start().getTime() + ((e.clientX - rect.left) / rect.width) * this.span));
    });
    this.timeline.addEventListener("wheel", (e) => {
      e.preventDefault();
      const i = SPANS.indexOf(this.span) + (e.deltaY > 0 ? -1 : 1);
      if (i >= 0 && i < SPANS.length) this.setSpan(SPANS[i]);
    }, { passive: false });
    container.replaceChildren(
      el("div", { class: "pb-controls" },
        el("label", {}, t("camera"), " ", this.camera), el("label", {}, t("date"), " ", this.date),
        el("label", {}, t("timeline"), " ", this.zoom), el("label", {}, t("speed"), " ", this.speed),
        this.download, this.exportLink, this.legend, this.info),
      this.timeline,
      el("div", { class: "pb-video" }, this.video));
  }

  refreshCameras() {
    const current = this.camera.value;
    const where = (c) => {
      const place = this.tree.placeOf(c.ref);
      return place ? `${place} / ` : "";
    };
    this.camera.replaceChildren(el("option", { value: "" }, t("select_camera")),
      ...[...this.tree.cameras.values()].map((c) => el("option", { value: c.ref, selected: c.ref === current }, `${where(c)}${c.name || c.ref}`)));
    if (!this.date.value) this.date.value = new Date(Date.now() - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 10);
  }

  dayStart() {
    const [y, m, d] = this.date.value.split("-").map(Number);
    return new Date(y, m - 1, d);
  }

  start() { return this.viewStart || this.dayStart(); }

  // Zoom around the playing moment (or the middle of the view).
  setSpan(ms, centre) {
    const mid = centre || this.cursor || new Date(this.start().getTime() + this.span / 2);
    this.span = ms;
    this.zoom.value = String(ms);
    const day = this.dayStart().getTime();
    const s = Math.min(Math.max(mid.getTime() - ms / 2, day), day + DAY_MS - ms);
    this.viewStart = ms >= DAY_MS ? null : new Date(s);
    this.draw();
  }

  async load() {
    const ref = this.camera.value;
    if (!ref || !this.date.value) return;
    const start = this.dayStart();
    const end = new Date(start.getTime() + DAY_MS);
    try {
      this.data = await fetchTimeline(ref, start, end);
      if (!this.data.segments.length) this.info.textContent = t("no_recordings");
      else this.info.textContent = `${this.data.segments.length} ${t("segments")}`;
    } catch (err) {
      this.data = { segments: [], gaps: [], events: [] };
      this.info.textContent = `${t("failed")}: ${err.message}`;
    }
    this.draw();
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const w = this.canvas.width, h = this.canvas.height, t0 = this.start().getTime(), span = this.span;
    const x = (ms) => ((ms - t0) / span) * w;
    const at = (iso) => new Date(iso).getTime();
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#2b3a4c";
    ctx.fillRect(0, 8, w, 24);
    const step = { [DAY_MS]: 7200000, 21600000: 1800000, 3600000: 300000, 600000: 60000 }[span] || span / 12;
    ctx.fillStyle = "#8a9bb0";
    ctx.font = "11px sans-serif";
    for (let ms = Math.ceil(t0 / step) * step; ms <= t0 + span; ms += step) {
      const px = x(ms);
      ctx.fillRect(px, h - 14, 1, 6);
      ctx.fillText(label(new Date(ms), span), px + 2, h - 2);
    }
    ctx.fillStyle = "#36c26b";
    for (const s of this.data.segments) ctx.fillRect(x(at(s.start)), 8, Math.max(2, x(at(s.end)) - x(at(s.start))), 24);
    ctx.fillStyle = "#e5484d";
    for (const g of this.data.gaps) ctx.fillRect(x(at(g.start)), 8, Math.max(1, x(at(g.end)) - x(at(g.start))), 24);
    ctx.fillStyle = "#f0a020";
    for (const ev of this.data.events) ctx.fillRect(x(at(ev.start)) - 1, 34, 3, 12);
    if (this.cursor) { ctx.fillStyle = "#ffffff"; ctx.fillRect(x(this.cursor.getTime()), 2, 2, 46); }
  }

  playAt(at, end) {
    const ref = this.camera.value;
    if (!ref) return;
    // Clicked in a gap: start at the next recorded segment.
    const seg = this.data.segments.find((s) => new Date(s.end) > at) || null;
    const from = seg && new Date(seg.start) > at ? new Date(seg.start) : at;
    const h264 = !PLAYS_HEVC && Boolean(seg) && seg.codec === "hevc";
    let to = end || new Date(from.getTime() + 10 * 60000);
    if (h264 && to - from > TRANSCODE_CHUNK_MS) to = new Date(from.getTime() + TRANSCODE_CHUNK_MS);
    this.cursor = from;
    this.video.src = clipUrl(ref, from, to, false, h264);
    this.video.play().catch(() => {});
    this.download.href = clipUrl(ref, from, to, true);
    this.download.hidden = false;
    const span = `start=${encodeURIComponent(from.toISOString())}&end=${encodeURIComponent(to.toISOString())}`;
    this.exportLink.href = `export.html?camera=${encodeURIComponent(ref)}&${span}`;
    this.exportLink.hidden = false;
    this.info.textContent = `${fmtTime(from.toISOString())} → ${fmtTime(to.toISOString())}`;
    this.container.dataset.clip = this.video.src;
    this.draw();
  }

  // From an alarm: the event with a little before and after, the timeline zoomed onto it.
  async openEvent(ev) {
    this.refreshCameras();
    this.camera.value = ev.type === "linkage" ? (ev.data?.cameras || [ev.camera])[0] : ev.camera;
    const start = new Date(new Date(ev.start).getTime() - 5000);
    const end = new Date((ev.end ? new Date(ev.end).getTime() : Date.now()) + 5000);
    const local = new Date(start.getTime() - start.getTimezoneOffset() * 60000);
    this.date.value = local.toISOString().slice(0, 10);
    await this.load();
    this.setSpan(600000, start);
    this.playAt(start, end);
  }
}
