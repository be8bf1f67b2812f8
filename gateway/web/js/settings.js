// Settings (设置): cameras (discover, add, edit, remove), motion zones/masks drawn on a snapshot,
// recording policy, children platforms and their tokens, upper GB/T 28181 platforms, users.
import { api, el, fmtTime } from "./api.js";
import { renderAudit } from "./audit.js";
import { renderUpstream } from "./gbupstream.js";
import { t } from "./i18n.js";

const SECTIONS = ["settings_cameras", "settings_motion", "settings_recording", "settings_children", "settings_gb28181", "settings_users", "settings_audit"];
const enc = encodeURIComponent;

async function attempt(fn, note) {
  note.classList.remove("error");
  try {
    const done = await fn();
    if (done !== false) note.textContent = t("saved");
  } catch (err) {
    note.textContent = `${t("failed")}: ${err.message}`;
    note.classList.add("error");
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Settings {
  constructor(container, { onChanged }) {
    this.container = container;
    this.onChanged = onChanged;
    this.section = "settings_cameras";
    this.body = el("div", { class: "settings-body" });
    this.note = el("span", { class: "notice", role: "status" });
    this.nav = el("div", { class: "settings-nav" }, ...SECTIONS.map((s) =>
      el("button", { dataset: { section: s }, onclick: () => this.show(s) }, t(s))), this.note);
    container.replaceChildren(this.nav, this.body);
  }

  show(section = this.section) {
    this.section = section;
    this.container.dataset.section = section;
    this.nav.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b.dataset.section === section));
    this.note.textContent = "";
    const render = {
      settings_cameras: () => this.cameras(), settings_motion: () => this.motion(),
      settings_recording: () => this.recording(), settings_children: () => this.children(), settings_users: () => this.users(),
      settings_audit: () => renderAudit(this.body),
      settings_gb28181: () => renderUpstream(this.body, (fn) => attempt(fn, this.note)),
    }[section];
    // data-shown names the section whose content the body holds, set once it is drawn:
    // until then the body may still show the previous section (renders are async).
    const seq = this.seq = (this.seq || 0) + 1;
    delete this.body.dataset.shown;
    render()
      .catch((err) => { this.body.replaceChildren(el("p", { class: "error" }, err.status === 403 ? t("forbidden") : err.message)); })
      .finally(() => { if (seq === this.seq) this.body.dataset.shown = section; });
  }

  async cameras() {
    const cams = await api("/api/v1/cameras");
    const name = el("input", { class: "cam-name", placeholder: t("name") });
    const location = el("input", { class: "cam-location", placeholder: t("location") });
    const host = el("input", { class: "cam-host", placeholder: t("onvif_address") });
    const user = el("input", { class: "cam-user", placeholder: t("username"), value: "admin" });
    const pass = el("input", { class: "cam-pass", placeholder: t("password"), type: "password", autocomplete: "new-password" });
    const rtsp = el("input", { class: "cam-rtsp", placeholder: `${t("rtsp_url")} (rtsp://…)`, size: 36 });
    let endpoint = null; // set when the form was filled from a discovery result
    const add = () => attempt(async () => {
      const tags = { name: name.value || undefined, location: location.value || undefined };
      if (endpoint && !rtsp.value) {
        await api("/api/v1/discovery/add", { method: "POST", body: { endpoint, ...tags, username: user.value || undefined, password: pass.value || undefined } });
      } else if (rtsp.value) {
        await api("/api/v1/cameras", { method: "POST", body: { ...tags, rtsp_url: rtsp.value.trim() } });
      } else {
        const [h, p] = host.value.trim().split(":");
        await api("/api/v1/cameras", { method: "POST", body: { ...tags, onvif: { host: h, port: Number(p || 80), username: user.value || null, password: pass.value || null } } });
      }
      pass.value = "";
      this.onChanged();
      await this.cameras();
    }, this.note);

    const ranges = el("input", { class: "disc-ranges", placeholder: "192.168.1.0/24", size: 24 });
    const results = el("div", { class: "disc-results" });
    const discover = () => attempt(async () => {
      const body = ranges.value.trim() ? { ranges: ranges.value.split(/[\s,，]+/).filter(Boolean) } : {};
      results.replaceChildren(el("p", { class: "hint" }, t("discovering")));
      // A periodic scan may be running (409): wait for it, then start ours.
      for (let i = 0; ; i++) {
        try { await api("/api/v1/discovery", { method: "POST", body }); break; } catch (err) {
          if (err.status !== 409 || i >= 60) throw err;
          await sleep(500);
        }
      }
      let status;
      for (let i = 0; i < 120; i++) {
        status = await api("/api/v1/discovery");
        if (status.state !== "running") break;
        await sleep(500);
      }
      const list = status.results || [];
      if (!list.length) { results.replaceChildren(el("p", { class: "hint" }, status.error || t("no_devices"))); return false; }
      results.replaceChildren(el("table", { class: "list" },
        el("tr", {}, ...["name", "address", "location", "status", ""].map((k) => el("th", {}, k ? t(k) : ""))),
        ...list.map((d) => el("tr", { dataset: { endpoint: d.endpoint } },
          el("td", {}, d.name || d.hardware || ""), el("td", {}, `${d.host || d.address}:${d.port || 80}`), el("td", {}, d.location || ""),
          el("td", {}, d.camera ? `${t("added")} (${d.camera})` : ""),
          el("td", {}, d.camera ? "" : el("button", { class: "use", onclick: () => {
            endpoint = d.endpoint; name.value = d.name || ""; location.value = d.location || "";
            host.value = `${d.host || d.address}:${d.port || 80}`; rtsp.value = ""; pass.focus();
          } }, t("add")))))));
      return false;
    }, this.note);

    const rows = cams.map((c) => {
      const nameIn = el("input", { value: c.name || "", size: 12 });
      const locIn = el("input", { value: c.location || "", size: 16 });
      return el("tr", { dataset: { camera: c.id } },
        el("td", {}, c.id), el("td", {}, nameIn), el("td", {}, locIn),
        el("td", {}, c.onvif ? `ONVIF ${c.onvif.host}:${c.onvif.port}` : "RTSP"),
        el("td", { class: `st-${c.status}` }, t(c.status || "unknown"), c.reason ? el("span", { class: "hint" }, ` ${c.reason}`) : null),
        el("td", {},
          el("button", { class: "save", onclick: () => attempt(async () => {
            await api(`/api/v1/cameras/${enc(c.id)}`, { method: "PATCH", body: { name: nameIn.value, location: locIn.value } });
            this.onChanged();
          }, this.note) }, t("save")), " ",
          el("button", { class: "remove", onclick: () => attempt(async () => {
            if (!confirm(`${t("confirm_remove")} ${c.name || c.id}`)) return false;
            await api(`/api/v1/cameras/${enc(c.id)}`, { method: "DELETE" });
            this.onChanged();
            await this.cameras();
          }, this.note) }, t("remove"))));
    });
    this.body.replaceChildren(
      el("table", { class: "list cameras" },
        el("tr", {}, ...["ID", "name", "location", "address", "status", ""].map((k) => el("th", {}, k === "ID" ? k : k ? t(k) : ""))),
        ...rows),
      el("h4", {}, t("add_camera")),
      el("div", { class: "form-row" }, name, location),
      el("div", { class: "form-row" }, host, user, pass, el("span", { class: "hint" }, t("or")), rtsp,
        el("button", { class: "add", onclick: add }, t("add"))),
      el("h4", {}, t("discover")),
      el("div", { class: "form-row" }, ranges, el("button", { class: "discover", onclick: discover }, t("discover")),
        el("span", { class: "hint" }, t("discover_hint"))),
      results);
  }

  async motion() {
    const cams = await api("/api/v1/cameras");
    const pick = el("select", { class: "motion-camera" }, ...cams.map((c) => el("option", { value: c.id }, c.name || c.id)));
    const area = el("div");
    const load = () => this.motionEditor(cams.find((c) => c.id === pick.value), area);
    pick.addEventListener("change", load);
    this.body.replaceChildren(el("div", { class: "form-row" }, t("camera"), pick), area);
    if (cams.length) load();
  }

  motionEditor(cam, area) {
    // The whole settings object goes back in the PATCH: fields not shown here keep their values.
    const m = { enabled: true, sensitivity: 0.5, zones: {}, masks: [], ...(cam.motion || {}) };
    m.zones = { ...m.zones };
    m.masks = [...m.masks];
    let mode = "zone", current = [];
    const img = el("img", { src: `/api/v1/cameras/${enc(cam.id)}/snapshot.jpg?t=${Date.now()}`, alt: t("snapshot") });
    const canvas = el("canvas", { width: 640, height: 360 });
    const modeLabel = el("span", { class: "hint" });
    const redraw = () => {
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      const poly = (pts, color, closed = true, name = "") => {
        if (!pts.length) return;
        ctx.strokeStyle = color; ctx.fillStyle = color + "44"; ctx.lineWidth = 3; ctx.beginPath();
        pts.forEach(([x, y], i) => (i ? ctx.lineTo(x * canvas.width, y * canvas.height) : ctx.moveTo(x * canvas.width, y * canvas.height)));
        if (closed) { ctx.closePath(); ctx.fill(); }
        ctx.stroke();
        if (name) { ctx.fillStyle = color; ctx.font = "bold 20px sans-serif"; ctx.fillText(name, pts[0][0] * canvas.width + 4, pts[0][1] * canvas.height + 22); }
      };
      Object.entries(m.zones).forEach(([name, p]) => poly(p, "#36c26b", true, name));
      m.masks.forEach((p) => poly(p, "#e5484d"));
      poly(current, mode === "zone" ? "#36c26b" : "#e5484d", false);
      modeLabel.textContent = `${mode === "zone" ? t("draw_zone") : t("draw_mask")}: ${t("zone_hint")}`;
      area.dataset.zones = String(Object.keys(m.zones).length);
      area.dataset.masks = String(m.masks.length);
    };
    const point = (e) => {
      const r = canvas.getBoundingClientRect();
      const clamp = (v) => Math.min(1, Math.max(0, v));
      return [+clamp((e.clientX - r.left) / r.width).toFixed(4), +clamp((e.clientY - r.top) / r.height).toFixed(4)];
    };
    canvas.addEventListener("click", (e) => {
      if (e.detail > 1) return; // the clicks of a double-click add no points
      current.push(point(e));
      redraw();
    });
    canvas.addEventListener("dblclick", () => {
      if (current.length >= 3) {
        if (mode === "zone") {
          let n = Object.keys(m.zones).length + 1;
          while (m.zones[`${t("zone")}${n}`]) n++;
          m.zones[`${t("zone")}${n}`] = current;
        } else m.masks.push(current);
      }
      current = []; redraw();
    });
    const sens = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: String(m.sensitivity), class: "sens" });
    const sensVal = el("span", {}, String(m.sensitivity));
    sens.addEventListener("input", () => { sensVal.textContent = sens.value; });
    const enabled = el("input", { type: "checkbox", checked: m.enabled, class: "motion-enabled" });
    const save = () => attempt(async () => {
      m.sensitivity = Number(sens.value); m.enabled = enabled.checked;
      const updated = await api(`/api/v1/cameras/${enc(cam.id)}`, { method: "PATCH", body: { motion: m } });
      cam.motion = updated.motion;
    }, this.note);
    area.replaceChildren(
      el("div", { class: "form-row" },
        el("label", {}, enabled, " ", t("enabled")), el("label", {}, t("sensitivity"), " ", sens, " ", sensVal),
        el("button", { class: "draw-zone", onclick: () => { mode = "zone"; current = []; redraw(); } }, t("draw_zone")),
        el("button", { class: "draw-mask", onclick: () => { mode = "mask"; current = []; redraw(); } }, t("draw_mask")),
        el("button", { class: "clear", onclick: () => { m.zones = {}; m.masks = []; current = []; redraw(); } }, t("clear")),
        el("button", { class: "save", onclick: save }, t("save"))),
      el("div", { class: "form-row" }, modeLabel),
      el("div", { class: "zone-editor" }, img, canvas));
    img.addEventListener("load", () => { canvas.width = img.naturalWidth || 640; canvas.height = img.naturalHeight || 360; redraw(); });
    redraw();
  }

  async recording() {
    const cams = await api("/api/v1/cameras");
    const modes = ["off", "continuous", "events", "both"];
    const num = (v, min, max) => el("input", { type: "number", value: String(v), min: String(min), max: String(max), step: "1", size: 4, style: "width:5em" });
    this.body.replaceChildren(el("table", { class: "list recording" },
      el("tr", {}, ...["camera", "mode", "segment_len", "pre_roll", "post_roll", ""].map((k) => el("th", {}, k ? t(k) : ""))),
      ...cams.map((c) => {
        const r = c.recording || {};
        const sel = el("select", { class: "rec-mode" }, ...modes.map((mo) => el("option", { value: mo, selected: (r.mode || "off") === mo }, t(`mode_${mo}`))));
        const seg = num(r.segment_s ?? 60, 2, 3600), pre = num(r.pre_s ?? 5, 0, 120), post = num(r.post_s ?? 10, 0, 600);
        return el("tr", { dataset: { camera: c.id } }, el("td", {}, c.name || c.id), el("td", {}, sel),
          el("td", {}, seg), el("td", {}, pre), el("td", {}, post),
          el("td", {}, el("button", { class: "save", onclick: () => attempt(async () => {
            const body = { recording: { ...r, mode: sel.value, segment_s: Number(seg.value), pre_s: Number(pre.value), post_s: Number(post.value) } };
            const updated = await api(`/api/v1/cameras/${enc(c.id)}`, { method: "PATCH", body });
            c.recording = updated.recording;
          }, this.note) }, t("save"))));
      })));
  }

  async children() {
    const kids = await api("/api/v1/children");
    const name = el("input", { class: "child-name", placeholder: "village-3", pattern: "[a-z0-9][a-z0-9_-]*" });
    const shown = el("pre", { class: "token", hidden: true });
    this.body.replaceChildren(
      el("table", { class: "list children" },
        el("tr", {}, ...["name", "status", "created", "last_seen", ""].map((k) => el("th", {}, k ? t(k) : ""))),
        ...kids.map((k) => el("tr", { dataset: { child: k.name } },
          el("td", {}, k.name),
          el("td", { class: k.revoked ? "" : k.online ? "st-online" : "st-offline" }, k.revoked ? t("revoked") : t(k.online ? "online" : "offline")),
          el("td", {}, fmtTime(k.created)), el("td", {}, fmtTime(k.last_seen)),
          el("td", {}, k.revoked ? "" : el("button", { class: "revoke", onclick: () => attempt(async () => {
            if (!confirm(`${t("confirm_revoke")} ${k.name}`)) return false;
            await api(`/api/v1/children/${enc(k.name)}`, { method: "DELETE" });
            await this.children();
          }, this.note) }, t("revoke")))))),
      el("h4", {}, t("add_child")),
      el("div", { class: "form-row" }, name, el("button", { class: "add", onclick: () => attempt(async () => {
        const r = await api("/api/v1/children", { method: "POST", body: { name: name.value.trim() } });
        await this.children();
        const again = this.body.querySelector("pre.token");
        again.hidden = false;
        again.textContent = `${t("token_once")}\n${r.token}`;
      }, this.note) }, t("add")), el("span", { class: "hint" }, t("tokens_hint"))),
      shown);
  }

  async users() {
    const users = await api("/api/v1/auth/users");
    const u = el("input", { class: "user-name", placeholder: t("username") });
    const p = el("input", { class: "user-pass", placeholder: t("password_min"), type: "password", autocomplete: "new-password" });
    const role = el("select", { class: "user-role" }, ...["viewer", "operator", "admin"].map((r) => el("option", { value: r }, t(r))));
    const scope = el("input", { class: "user-scope", placeholder: `${t("scope")}: town-a/village-1` });
    this.body.replaceChildren(
      el("table", { class: "list users" },
        el("tr", {}, el("th", {}, t("username")), el("th", {}, t("role")), el("th", {}, t("scope")), el("th", {})),
        ...users.map((x) => el("tr", { dataset: { user: x.username } }, el("td", {}, x.username), el("td", {}, t(x.role)),
          el("td", {}, x.scope || t("all")),
          el("td", {}, el("button", { class: "remove", onclick: () => attempt(async () => {
            if (!confirm(`${t("confirm_remove")} ${x.username}`)) return false;
            await api(`/api/v1/auth/users/${enc(x.username)}`, { method: "DELETE" });
            await this.users();
          }, this.note) }, t("remove")))))),
      el("h4", {}, t("add_user")),
      el("div", { class: "form-row" }, u, p, role, scope, el("button", { class: "add", onclick: () => attempt(async () => {
        await api("/api/v1/auth/users", { method: "POST", body: { username: u.value.trim(), password: p.value, role: role.value, scope: scope.value.trim() } });
        await this.users();
      }, this.note) }, t("add"))));
  }
}
