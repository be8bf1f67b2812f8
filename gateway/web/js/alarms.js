// Alarm list (报警): recent events, then live ones over SSE; acknowledge; linkage drives the wall.
import { api, el, fmtTime } from "./api.js";
import { getLang, has as hasString, t } from "./i18n.js";

const MAX_ROWS = 300;
const EVENT_TYPES = [
  "motion", "camera_motion", "tamper", "input",
  "camera_offline", "camera_online", "linkage", "alarm", "custom", "event",
  "recording_paused", "recording_resumed", "child_offline", "child_online", "diagnosis", "plan",
];
// Not alarms: inspection reports travel as events up the cascade; the report page shows them.
const NOT_ALARMS = new Set(["inspection"]);

export class AlarmList {
  constructor(list, typeFilter, cameraFilter, { tree, onLinkage, onPlay, onStatus, onEvent }) {
    this.list = list;
    this.typeFilter = typeFilter;
    this.cameraFilter = cameraFilter;
    this.tree = tree;
    this.onLinkage = onLinkage;
    this.onPlay = onPlay;
    this.onStatus = onStatus;
    this.onEvent = onEvent || (() => {}); // every live event (the e-map flashes its pins)
    this.events = new Map();
    this.images = new Map(); // event id -> <img>, kept across renders
    this.source = null;
    this.unacked = document.getElementById("alarm-unacked");
    this.count = document.getElementById("alarm-count");
    typeFilter.addEventListener("change", () => this.render());
    cameraFilter.addEventListener("input", () => this.render());
    this.unacked?.addEventListener("change", () => this.render());
  }

  async load() {
    const recent = await api("/api/v1/events?limit=100");
    for (const ev of recent.reverse()) if (!NOT_ALARMS.has(ev.type)) this.events.set(ev.id, ev);
    this.render();
    this.connect();
  }

  connect() {
    if (this.source) this.source.close();
    const token = localStorage.getItem("gw_token");
    const url = "/api/v1/events/stream" + (token ? `?access_token=${encodeURIComponent(token)}` : "");
    this.source = new EventSource(url, { withCredentials: true });
    const handle = (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      this.receive(ev);
    };
    this.source.onmessage = handle;
    // The stream names each message after its event type; EventSource needs a listener per name.
    for (const type of EVENT_TYPES) {
      this.source.addEventListener(type, handle);
    }
  }

  receive(ev) {
    const isNew = !this.events.has(ev.id);
    this.events.delete(ev.id);
    this.events.set(ev.id, ev);
    while (this.events.size > MAX_ROWS) {
      const oldest = this.events.keys().next().value;
      this.events.delete(oldest);
      this.images.delete(oldest);
    }
    if (ev.type === "camera_offline") this.onStatus(ev.camera, "offline");
    if (ev.type === "camera_online") this.onStatus(ev.camera, "online");
    this.onEvent(ev);
    if (isNew && (ev.type === "linkage" || ev.type === "plan")) this.onLinkage(ev);
    this.render();
  }

  name(ref) { return this.tree.label(ref); }

  // Motion intensity is the changed share of the picture, often under 1 %: one decimal below
  // 10 %, and "peak" once the event has ended (its score is then the whole event's peak).
  score(ev) {
    const pct = ev.score * 100;
    const text = pct > 0 && pct < 0.1 ? "<0.1" : pct < 10 ? pct.toFixed(1) : pct.toFixed(0);
    return `${t(ev.end ? "peak_score" : "score")} ${text}%`;
  }

  render() {
    const type = this.typeFilter.value;
    const q = this.cameraFilter.value.trim().toLowerCase();
    const unackedOnly = this.unacked?.checked;
    const rows = [...this.events.values()].reverse().filter((ev) =>
      (!type || ev.type === type) && (!unackedOnly || !ev.acknowledged) &&
      (!q || ev.camera.toLowerCase().includes(q) || this.name(ev.camera).toLowerCase().includes(q)));
    const open = [...this.events.values()].filter((ev) => !ev.acknowledged && ev.type !== "camera_online").length;
    if (this.count) this.count.textContent = open ? `${t("unacked")} ${open}` : "";
    this.list.replaceChildren(...rows.slice(0, 200).map((ev) => this.row(ev)));
  }

  row(ev) {
    const img = ev.snapshot_url ? this.thumbnail(ev) : el("span", { class: "noimg" });
    const ack = ev.acknowledged
      ? el("span", { class: "acked-label" }, t("acked"))
      : el("button", { class: "ack", onclick: () => this.ack(ev) }, t("ack"));
    const group = (ev.data?.cameras || []).map((c) => this.name(c)).join("、");
    const detail = ev.type === "linkage" ? `${ev.data?.rule || ""} → ${group}`
      : ev.type === "plan" ? [ev.data?.plan, ev.data?.message, ev.data?.launched_by].filter(Boolean).join(" · ")
      : ev.type === "diagnosis"
        ? `${(getLang() === "en" ? ev.data?.reason_en : ev.data?.reason) || ev.data?.kind || ""}${ev.end ? ` (${t("diagnosis_cleared")})` : ""}`
        : ev.score != null ? this.score(ev) : "";
    return el("li", { class: `alarm ${ev.type}${ev.acknowledged ? " acked" : ""}`, dataset: { id: ev.id, type: ev.type, camera: ev.camera } },
      img,
      el("span", { class: "when" }, fmtTime(ev.start)),
      el("span", { class: "type" }, hasString(ev.type) ? t(ev.type) : ev.type),
      el("span", { class: "cam" }, this.name(ev.camera)),
      el("span", { class: "detail" }, detail),
      el("span", { class: "spacer" }),
      ["motion", "linkage"].includes(ev.type) || ev.snapshot_url
        ? el("button", { class: "play", onclick: () => this.onPlay(ev) }, t("play_clip")) : null,
      ack);
  }

  // An event's picture may reach a parent gateway a moment after the event: retry a few times.
  // One <img> per event is kept across re-renders so it does not reload (or flicker).
  thumbnail(ev) {
    const cached = this.images.get(ev.id);
    if (cached && cached.dataset.src === ev.snapshot_url) return cached;
    const img = el("img", { alt: "", title: t("snapshot"), dataset: { src: ev.snapshot_url } });
    let tries = 0;
    img.addEventListener("error", () => {
      if (++tries > 40) return;
      setTimeout(() => { img.src = `${ev.snapshot_url}?retry=${tries}`; }, tries < 20 ? 150 : 1000);
    });
    img.addEventListener("click", () => window.open(ev.snapshot_url, "_blank"));
    img.src = ev.snapshot_url;
    this.images.set(ev.id, img);
    return img;
  }

  async ack(ev) {
    try {
      const updated = await api(`/api/v1/events/${encodeURIComponent(ev.id)}/ack`, { method: "POST" });
      this.receive(updated && updated.id ? updated : { ...ev, acknowledged: true });
    } catch (err) {
      this.list.dataset.error = err.message;
      alert(`${t("failed")}: ${err.message}`);
    }
  }
}
