// Settings (设置): cameras, motion zones/masks drawn on a snapshot, recording policy, children, users.
import { api, el } from "./api.js";
import { t } from "./i18n.js";

const SECTIONS = ["settings_cameras", "settings_motion", "settings_recording", "settings_children", "settings_users"];

async function attempt(fn, note) {
  try { await fn(); note.textContent = t("saved"); } catch (err) { note.textContent = `${t("failed")}: ${err.message}`; }
}

export class Settings {
  constructor(container, { onChanged }) {
    this.container = container;
    this.onChanged = onChanged;
    this.body = el("div", { class: "settings-body" });
    this.note = el("span", { class: "notice" });
    this.nav = el("div", { class: "settings-nav" }, ...SECTIONS.map((s) =>
      el("button", { dataset: { section: s }, onclick: () => this.show(s) }, t(s))));
    container.replaceChildren(this.nav, this.note, this.body);
  }

  show(section = "settings_cameras") {
    this.nav.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.section === section));
    this.note.textContent = "";
    const render = {
      settings_cameras: () => this.cameras(), settings_motion: () => this.motion(),
      settings_recording: () => this.recording(), settings_children: () => this.children(), settings_users: () => this.users(),
    }[section];
    render().catch((err) => { this.body.replaceChildren(el("p", { class: "error" }, err.message)); });
  }

  async cameras() {
    const cams = await api("/api/v1/cameras");
    const name = el("input", { placeholder: t("name") });
    const host = el("input", { placeholder: `ONVIF ${t("address")} (host[:port])` });
    const user = el("input", { placeholder: t("username"), value: "admin" });
    const pass = el("input", { placeholder: t("password"), type: "password" });
    const rtsp = el("input", { placeholder: `${t("rtsp_url")} (rtsp://…)`, size: 40 });
    const results = el("div");
    const add = () => attempt(async () => {
      const body = { name: name.value };
      if (rtsp.value) body.rtsp_url = rtsp.value;
      else {
        const [h, p] = host.value.split(":");
        body.onvif = { host: h, port: Number(p || 80), username: user.value, password: pass.value };
      }
      await api("/api/v1/cameras", { method: "POST", body });
      this.onChanged(); this.cameras();
    }, this.note);
    const discover = () => attempt(async () => {
      await api("/api/v1/discovery", { method: "POST", body: {} });
      await new Promise((r) => setTimeout(r, 3000));
      const found = await api("/api/v1/discovery");
      const list = found.results || found.devices || [];
      results.replaceChildren(el("table", { class: "list" },
        el("tr", {}, el("th", {}, t("name")), el("th", {}, t("address")), el("th", {}, t("location")), el("th", {})),
        ...list.map((d) => el("tr", {}, el("td", {}, d.name || ""), el("td", {}, d.address || ""), el("td", {}, d.location || ""),
          el("td", {}, el("button", { onclick: () => { name.value = d.name || ""; host.value = d.address || ""; } }, t("add")))))));
    }, this.note);
    this.body.replaceChildren(
      el("table", { class: "list" },
        el("tr", {}, ...["id", "name", "location", "status", ""].map((k) => el("th", {}, k === "id" ? "ID" : t(k)))),
        ...cams.map((c) => el("tr", { dataset: { camera: c.id } },
          el("td", {}, c.id), el("td", {}, c.name || ""), el("td", {}, c.location || ""), el("td", {}, t(c.status || "unknown")),
          el("td", {}, el("button", { onclick: () => attempt(async () => {
            if (!confirm(t("confirm_remove"))) return;
            await api(`/api/v1/cameras/${encodeURIComponent(c.id)}`, { method: "DELETE" });
            this.onChanged(); this.cameras();
          }, this.note) }, t("remove")))))),
      el("h4", {}, t("add")),
      el("div", { class: "form-row" }, name, host, user, pass, el("span", {}, "/"), rtsp, el("button", { onclick: add }, t("add"))),
      el("div", { class: "form-row" }, el("button", { onclick: discover }, t("discover"))), results);
  }

  async motion() {
    const cams = await api("/api/v1/cameras");
    const pick = el("select", {}, ...cams.map((c) => el("option", { value: c.id }, c.name || c.id)));
    const area = el("div");
    const load = () => this.motionEditor(cams.find((c) => c.id === pick.value), area);
    pick.addEventListener("change", load);
    this.body.replaceChildren(el("div", { class: "form-row" }, t("camera"), pick), area);
    if (cams.length) load();
  }

  motionEditor(cam, area) {
    const m = { enabled: true, sensitivity: 0.5, zones: {}, masks: [], ...(cam.motion || {}) };
    let mode = "zone", current = [];
    const img = el("img", { src: `/api/v1/cameras/${encodeURIComponent(cam.id)}/snapshot.jpg?t=${Date.now()}`, alt: "" });
    const canvas = el("canvas", { width: 640, height: 360 });
    const redraw = () => {
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      const poly = (pts, color) => {
        if (!pts.length) return;
        ctx.strokeStyle = color; ctx.fillStyle = color + "33"; ctx.lineWidth = 2; ctx.beginPath();
        pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * canvas.width, y * canvas.height) : ctx.moveTo(x * canvas.width, y * canvas.height)));
        ctx.closePath(); ctx.fill(); ctx.stroke();
      };
      Object.values(m.zones).forEach((p) => poly(p, "#36c26b"));
      m.masks.forEach((p) => poly(p, "#e5484d"));
      poly(current, mode === "zone" ? "#36c26b" : "#e5484d");
    };
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      current.push([+((e.clientX - r.left) / r.width).toFixed(4), +((e.clientY - r.top) / r.height).toFixed(4)]);
      redraw();
    });
    canvas.addEventListener("dblclick", () => {
      if (current.length >= 3) {
        if (mode === "zone") m.zones[`zone-${Object.keys(m.zones).length + 1}`] = current;
        else m.masks.push(current);
      }
      current = []; redraw();
    });
    const sens = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(m.sensitivity) });
    const enabled = el("input", { type: "checkbox", checked: m.enabled });
    const save = () => attempt(async () => {
      m.sensitivity = Number(sens.value); m.enabled = enabled.checked;
      await api(`/api/v1/cameras/${encodeURIComponent(cam.id)}`, { method: "PATCH", body: { motion: { enabled: m.enabled, sensitivity: m.sensitivity, zones: m.zones, masks: m.masks } } });
    }, this.note);
    area.replaceChildren(
      el("div", { class: "form-row" },
        el("label", {}, enabled, t("enabled")), el("label", {}, t("sensitivity"), " ", sens),
        el("button", { onclick: () => { mode = "zone"; current = []; } }, t("draw_zone")),
        el("button", { onclick: () => { mode = "mask"; current = []; } }, t("draw_mask")),
        el("button", { onclick: () => { m.zones = {}; m.masks = []; current = []; redraw(); } }, t("clear")),
        el("button", { onclick: save }, t("save"))),
      el("div", { class: "zone-editor" }, img, canvas));
    img.addEventListener("load", () => { canvas.width = img.naturalWidth || 640; canvas.height = img.naturalHeight || 360; redraw(); });
    redraw();
  }

  async recording() {
    const cams = await api("/api/v1/cameras");
    const modes = ["off", "continuous", "events", "both"];
    this.body.replaceChildren(el("table", { class: "list" },
      el("tr", {}, el("th", {}, t("camera")), el("th", {}, t("mode")), el("th", {})),
      ...cams.map((c) => {
        const sel = el("select", {}, ...modes.map((mo) => el("option", { value: mo, selected: (c.recording?.mode || "off") === mo }, t(`mode_${mo}`))));
        return el("tr", {}, el("td", {}, c.name || c.id), el("td", {}, sel),
          el("td", {}, el("button", { onclick: () => attempt(() => api(`/api/v1/cameras/${encodeURIComponent(c.id)}`, { method: "PATCH", body: { recording: { ...(c.recording || {}), mode: sel.value } } }), this.note) }, t("save"))));
      })));
  }

  async children() {
    const kids = await api("/api/v1/children");
    const name = el("input", { placeholder: "village-3" });
    const shown = el("pre", { class: "token" });
    this.body.replaceChildren(
      el("table", { class: "list" },
        el("tr", {}, el("th", {}, t("name")), el("th", {}, t("status")), el("th", {})),
        ...kids.map((k) => el("tr", {}, el("td", {}, k.name || k.id), el("td", {}, t(k.status || (k.online ? "online" : "offline"))),
          el("td", {}, el("button", { onclick: () => attempt(async () => { await api(`/api/v1/children/${encodeURIComponent(k.name || k.id)}`, { method: "DELETE" }); this.children(); }, this.note) }, t("revoke")))))),
      el("div", { class: "form-row" }, name, el("button", { onclick: () => attempt(async () => {
        const r = await api("/api/v1/children", { method: "POST", body: { name: name.value } });
        shown.textContent = `${t("token_once")}\n${r.token}`;
      }, this.note) }, t("add"))), shown);
  }

  async users() {
    const users = await api("/api/v1/auth/users");
    const u = el("input", { placeholder: t("username") });
    const p = el("input", { placeholder: t("password"), type: "password" });
    const role = el("select", {}, ...["viewer", "operator", "admin"].map((r) => el("option", { value: r }, t(r))));
    const scope = el("input", { placeholder: "town-a/village-1" });
    this.body.replaceChildren(
      el("table", { class: "list" },
        el("tr", {}, el("th", {}, t("username")), el("th", {}, t("role")), el("th", {}, "scope"), el("th", {})),
        ...users.map((x) => el("tr", {}, el("td", {}, x.username), el("td", {}, t(x.role)), el("td", {}, x.scope || "*"),
          el("td", {}, el("button", { onclick: () => attempt(async () => { await api(`/api/v1/auth/users/${encodeURIComponent(x.username)}`, { method: "DELETE" }); this.users(); }, this.note) }, t("remove")))))),
      el("div", { class: "form-row" }, u, p, role, scope, el("button", { onclick: () => attempt(async () => {
        await api("/api/v1/auth/users", { method: "POST", body: { username: u.value, password: p.value, role: role.value, scope: scope.value } });
        this.users();
      }, this.note) }, t("add"))));
  }
}
