// E-map (电子地图): a node's map image with camera pins and the areas of the nodes below.
// Pins show online/offline and flash on alarms; a click plays the camera in a popup or sends it
// to a wall tile; an area opens that node's map (fetched by this gateway through the cascade).
// Operators edit this gateway's own map: upload an image, drag cameras and nodes from the tree.
import { ApiError, api, authHeaders, el } from "./api.js";
import { STRINGS, getLang, t } from "./i18n.js";
import { DRAG_TYPE } from "./tree.js";
import { WhepPlayer } from "./whep.js";

Object.assign(STRINGS["zh-CN"], {
  nav_map: "电子地图", map_this_level: "本级", map_none: "该节点尚未上传地图",
  map_upload: "上传底图", map_edit: "编辑点位", map_done: "完成", map_save: "保存点位",
  map_saved: "点位已保存", map_uploaded: "底图已上传", map_edit_hint: "从左侧设备树拖动摄像机（或村、镇）到地图上；拖动点位可移动，× 删除",
  map_too_big: "文件超过 20 MB，请压缩后再上传", map_children: "下级地图", map_send: "送到画面",
  map_play: "实时预览", map_unsaved: "有未保存的修改", map_remove: "删除点位", map_outside: "不属于本级的节点，无法放置",
  map_alarm: "报警", map_delete: "删除地图", map_confirm_delete: "确定删除本级地图及全部点位？",
});
Object.assign(STRINGS.en, {
  nav_map: "E-map", map_this_level: "This level", map_none: "No map uploaded for this node yet",
  map_upload: "Upload map", map_edit: "Edit pins", map_done: "Done", map_save: "Save pins",
  map_saved: "Pins saved", map_uploaded: "Map uploaded", map_edit_hint: "Drag cameras (or villages/towns) from the tree onto the map; drag a pin to move it, × to remove it",
  map_too_big: "The file is larger than 20 MB: shrink it and upload again", map_children: "Maps below", map_send: "Send to tile",
  map_play: "Live view", map_unsaved: "Unsaved changes", map_remove: "Remove pin", map_outside: "That node is not below this level",
  map_alarm: "Alarm", map_delete: "Delete map", map_confirm_delete: "Delete this level's map and all its pins?",
});

const MAX_BYTES = 20 * 1024 * 1024;
const FLASH_MS = 15000;
// Events that are states or instructions, not alarms: they do not flash a pin.
const NOT_ALARMS = new Set(["camera_online", "camera_offline", "plan", "linkage", "inspection",
  "recording_paused", "recording_resumed", "child_online", "child_offline"]);
const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;

export class EMap {
  constructor(view, { tree, wall, canEdit, onPlayOnWall }) {
    this.view = view;
    this.tree = tree;
    this.wall = wall;
    this.canEdit = canEdit;
    this.onPlayOnWall = onPlayOnWall;
    this.node = "";
    this.doc = null;
    this.editing = false;
    this.dirty = false;
    this.flashing = new Map(); // camera ref -> timer
    this.player = null;
    this.dragFrom = null; // what the tree started dragging: { node } for a node row
    this.opening = 0;
    // The tree's node rows carry their cameras only; the map needs the node itself for an area.
    document.addEventListener("dragstart", (e) => {
      const row = e.target.closest?.(".tree-node > .row");
      this.dragFrom = row ? { node: row.parentElement.dataset.path || "" } : null;
    }, true);
    this.build();
  }

  build() {
    const $ = (sel) => this.view.querySelector(sel);
    this.view.replaceChildren(
      el("div", { class: "map-toolbar" },
        el("nav", { class: "map-crumbs", id: "map-crumbs" }),
        el("label", { class: "map-upload", hidden: !this.canEdit },
          el("span", { class: "button-like" }, t("map_upload")),
          el("input", { type: "file", id: "map-file", accept: "image/png,image/jpeg,image/svg+xml,.png,.jpg,.jpeg,.svg", hidden: true })),
        el("button", { id: "map-edit", hidden: true }, t("map_edit")),
        el("button", { id: "map-save", hidden: true }, t("map_save")),
        el("button", { id: "map-delete", hidden: true }, t("map_delete")),
        el("span", { id: "map-notice", class: "notice", role: "status" }),
        el("span", { id: "map-error", class: "error", role: "alert" })),
      el("div", { class: "map-hint", id: "map-hint", hidden: true }, t("map_edit_hint")),
      el("div", { class: "map-body" },
        el("div", { class: "map-stage", id: "map-stage" },
          el("img", { class: "map-img", id: "map-img", alt: "", draggable: "false" }),
          el("div", { class: "map-layer", id: "map-layer" })),
        el("div", { class: "map-empty", id: "map-empty", hidden: true })),
      el("div", { class: "map-popup", id: "map-popup", hidden: true }));
    this.stage = $("#map-stage");
    this.img = $("#map-img");
    this.layer = $("#map-layer");
    $("#map-file").addEventListener("change", (e) => this.upload(e.target.files[0]));
    $("#map-edit").addEventListener("click", () => this.setEditing(!this.editing));
    $("#map-save").addEventListener("click", () => this.save());
    $("#map-delete").addEventListener("click", () => this.remove());
    this.img.addEventListener("load", () => this.render());
    this.stage.addEventListener("dragover", (e) => {
      if (!this.editing || !e.dataTransfer.types.includes(DRAG_TYPE)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    });
    this.stage.addEventListener("drop", (e) => this.drop(e));
  }

  $(sel) { return this.view.querySelector(sel); }

  say(text, isError = false) {
    this.$("#map-notice").textContent = isError ? "" : text;
    this.$("#map-error").textContent = isError ? text : "";
  }

  // Coming back to the tab: the map as the server has it now, unless unsaved edits are open.
  async show() { if (this.editing && this.dirty) this.render(); else await this.open(this.node); }

  async open(node) {
    if (this.dirty && this.editing && !confirm(t("map_unsaved"))) return;
    this.closePopup();
    this.node = node;
    this.editing = false;
    this.dirty = false;
    this.say("");
    const gen = ++this.opening; // a later open (a click while this one loads) wins
    let doc = null;
    let error = "";
    try {
      doc = await api(`/api/v1/maps?node=${encodeURIComponent(node)}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404 && /尚未上传/.test(err.message))) error = err.message;
    }
    if (gen !== this.opening) return;
    this.doc = doc;
    if (error) this.say(error, true);
    this.view.dataset.node = node;
    if (this.doc) {
      if (this.img.dataset.src !== this.doc.image_url) {
        this.img.dataset.src = this.doc.image_url;
        this.img.src = this.doc.image_url;
      }
    } else {
      this.img.removeAttribute("src");
      delete this.img.dataset.src;
    }
    this.render();
  }

  setEditing(on) {
    this.editing = on && this.canEdit && !this.node;
    this.render();
  }

  crumbs() {
    const nav = this.$("#map-crumbs");
    const parts = this.node ? this.node.split("/") : [];
    const root = this.tree.root;
    const items = [el("a", { href: "#", dataset: { node: "" } }, root?.name || t("map_this_level"))];
    parts.forEach((_, i) => {
      const path = parts.slice(0, i + 1).join("/");
      items.push(" › ", el("a", { href: "#", dataset: { node: path } }, this.tree.nodeNames.get(path) || parts[i]));
    });
    nav.replaceChildren(...items);
    nav.querySelectorAll("a").forEach((a) => a.addEventListener("click", (e) => { e.preventDefault(); this.open(a.dataset.node); }));
  }

  // Nodes right below the shown one, from the tree: reachable even when this level has no map.
  childNodes() {
    const here = this.treeNode(this.node);
    return here ? here.children || [] : [];
  }

  treeNode(path) {
    const find = (n) => {
      if ((n._prefix || "") === path) return n;
      for (const c of n.children || []) { const f = find(c); if (f) return f; }
      return null;
    };
    return this.tree.root ? find(this.tree.root) : null;
  }

  status(ref, fallback) { return this.tree.cameras.get(ref)?.status || fallback || "unknown"; }

  render() {
    this.crumbs();
    const doc = this.doc;
    this.$(".map-upload").hidden = !(this.canEdit && !this.node);
    this.$("#map-edit").hidden = !(doc && doc.editable);
    this.$("#map-edit").textContent = this.editing ? t("map_done") : t("map_edit");
    this.$("#map-edit").classList.toggle("active", this.editing);
    this.$("#map-save").hidden = !this.editing;
    this.$("#map-delete").hidden = !this.editing;
    this.$("#map-hint").hidden = !this.editing;
    this.view.classList.toggle("editing", this.editing);
    this.stage.hidden = !doc;
    const empty = this.$("#map-empty");
    empty.hidden = Boolean(doc);
    if (!doc) {
      const kids = this.childNodes();
      empty.replaceChildren(el("p", {}, t("map_none")),
        kids.length ? el("p", {}, `${t("map_children")}${t("colon")}`,
          ...kids.map((c) => el("button", { class: "map-child", dataset: { node: c._prefix }, onclick: () => this.open(c._prefix) }, c.name || c.id))) : null);
      this.layer.replaceChildren();
      return;
    }
    const pins = doc.pins.map((p) => this.pinNode(p));
    const areas = doc.areas.map((a) => this.areaNode(a));
    this.layer.replaceChildren(...areas, ...pins);
  }

  pinNode(pin) {
    const status = this.status(pin.camera, pin.status);
    const name = this.tree.cameras.get(pin.camera)?.name || pin.name || pin.camera;
    const node = el("div", {
      class: `map-pin ${status}${this.flashing.has(pin.camera) ? " alarm" : ""}`,
      style: `left:${pin.x * 100}%;top:${pin.y * 100}%`,
      title: `${this.tree.label(pin.camera) || name} · ${t(status)}`,
      role: "button", tabindex: "0",
      dataset: { camera: pin.camera, status },
    }, el("span", { class: "pin-dot" }, pin.ptz ? "◉" : "▣"), el("span", { class: "pin-label" }, name));
    if (this.editing) {
      node.append(el("button", { class: "pin-remove", title: t("map_remove"), onclick: (e) => {
        e.stopPropagation();
        this.doc.pins = this.doc.pins.filter((p) => p !== pin);
        this.changed();
      } }, "×"));
      this.movable(node, pin);
    } else {
      node.addEventListener("click", () => this.play(pin.camera));
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") this.play(pin.camera); });
    }
    return node;
  }

  areaNode(area) {
    const below = [...this.flashing.keys()].some((ref) => ref.startsWith(`${area.node}/`));
    // Counts as the tree has them now (it follows status events); the map's own as a fallback.
    const sub = this.treeNode(area.node);
    const cams = sub ? this.tree.camerasUnder(sub) : null;
    const total = cams ? cams.length : area.cameras_total ?? 0;
    const online = cams ? cams.filter((c) => c.status === "online").length : area.cameras_online ?? 0;
    const node = el("div", {
      class: `map-area ${area.status || "unknown"}${below ? " alarm" : ""}`,
      style: `left:${area.x * 100}%;top:${area.y * 100}%;width:${area.w * 100}%;height:${area.h * 100}%`,
      title: `${area.name || area.node} · ${online}/${total} ${t("online")}`,
      role: "link", tabindex: "0", dataset: { node: area.node },
    }, el("span", { class: "area-name" }, area.name || area.node), el("span", { class: "area-count" }, `${online}/${total}`));
    if (this.editing) {
      node.append(el("button", { class: "pin-remove", title: t("map_remove"), onclick: (e) => {
        e.stopPropagation();
        this.doc.areas = this.doc.areas.filter((a) => a !== area);
        this.changed();
      } }, "×"));
      this.movable(node, area);
    } else {
      node.addEventListener("click", () => this.open(area.node));
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") this.open(area.node); });
    }
    return node;
  }

  // Drag a placed pin or area to move it (pointer events: works with mouse, pen and touch).
  movable(node, item) {
    node.addEventListener("pointerdown", (e) => {
      if (e.target.closest(".pin-remove")) return;
      e.preventDefault();
      node.setPointerCapture(e.pointerId);
      const move = (ev) => {
        const [x, y] = this.fraction(ev);
        item.x = x; item.y = y;
        node.style.left = `${x * 100}%`; node.style.top = `${y * 100}%`;
      };
      const up = (ev) => {
        move(ev);
        node.removeEventListener("pointermove", move);
        node.removeEventListener("pointerup", up);
        this.changed();
      };
      node.addEventListener("pointermove", move);
      node.addEventListener("pointerup", up);
    });
  }

  fraction(e) {
    const box = this.img.getBoundingClientRect();
    return [round((e.clientX - box.left) / box.width), round((e.clientY - box.top) / box.height)];
  }

  drop(e) {
    if (!this.editing || !this.doc) return;
    e.preventDefault();
    const [x, y] = this.fraction(e);
    const from = this.dragFrom;
    this.dragFrom = null;
    if (from && from.node !== undefined) {
      if (!from.node) { this.say(t("map_outside"), true); return; }
      this.doc.areas = this.doc.areas.filter((a) => a.node !== from.node);
      const sub = this.tree.nodeNames.get(from.node);
      this.doc.areas.push({ node: from.node, x: Math.min(x, 0.88), y: Math.min(y, 0.92), w: 0.12, h: 0.08, name: sub });
      this.changed();
      return;
    }
    let refs = [];
    try { refs = JSON.parse(e.dataTransfer.getData(DRAG_TYPE) || "[]"); } catch { refs = []; }
    refs.forEach((ref, i) => {
      this.doc.pins = this.doc.pins.filter((p) => p.camera !== ref);
      const cam = this.tree.cameras.get(ref);
      this.doc.pins.push({ camera: ref, x: round(x + i * 0.02), y: round(y + i * 0.02), name: cam?.name, ptz: cam?.ptz });
    });
    if (refs.length) this.changed();
  }

  changed() {
    this.dirty = true;
    this.say(t("map_unsaved"));
    this.render();
  }

  async save() {
    const body = {
      pins: this.doc.pins.map((p) => ({ camera: p.camera, x: p.x, y: p.y })),
      areas: this.doc.areas.map((a) => ({ node: a.node, x: a.x, y: a.y, w: a.w, h: a.h })),
    };
    try {
      this.doc = await api(`/api/v1/maps/layout?node=${encodeURIComponent(this.node)}`, { method: "PUT", body });
      this.dirty = false;
      this.say(t("map_saved"));
      this.render();
    } catch (err) {
      this.say(`${t("failed")}${t("colon")}${err.message}`, true);
    }
  }

  async upload(file) {
    const input = this.$("#map-file");
    if (!file) return;
    input.value = "";
    if (file.size > MAX_BYTES) { this.say(t("map_too_big"), true); return; }
    const r = await fetch(`/api/v1/maps/image?node=${encodeURIComponent(this.node)}`, {
      method: "PUT", body: file, credentials: "same-origin",
      headers: { ...authHeaders(), "Content-Type": file.type || "application/octet-stream" },
    });
    if (!r.ok) {
      let detail = `HTTP ${r.status}`;
      try { detail = (await r.json()).detail || detail; } catch { /* not JSON */ }
      this.say(`${t("failed")}${t("colon")}${r.status === 413 ? t("map_too_big") : detail}`, true);
      return;
    }
    this.doc = null;
    await this.open(this.node);
    this.say(t("map_uploaded"));
  }

  async remove() {
    if (!confirm(t("map_confirm_delete"))) return;
    try {
      await api(`/api/v1/maps?node=${encodeURIComponent(this.node)}`, { method: "DELETE" });
      this.dirty = false;
      await this.open(this.node);
    } catch (err) {
      this.say(`${t("failed")}${t("colon")}${err.message}`, true);
    }
  }

  // -- live: statuses and alarms from the event stream ----------------------------------------
  // Only a shown map is redrawn (show() redraws it with whatever happened meanwhile).
  onEvent(ev) {
    if (!ev || !ev.camera) return;
    const redraw = () => { if (this.doc && !this.view.hidden) this.render(); };
    if (ev.type === "camera_online" || ev.type === "camera_offline") { redraw(); return; }
    if (NOT_ALARMS.has(ev.type)) return;
    clearTimeout(this.flashing.get(ev.camera));
    const ms = ev.end ? 5000 : FLASH_MS;
    this.flashing.set(ev.camera, setTimeout(() => { this.flashing.delete(ev.camera); redraw(); }, ms));
    redraw();
  }

  // -- playing ----------------------------------------------------------------------------------
  play(ref) {
    this.closePopup();
    const popup = this.$("#map-popup");
    const video = el("video", { autoplay: true, muted: true, playsinline: true });
    video.muted = true;
    const state = el("span", { class: "popup-state" }, t("connecting"));
    const tiles = el("select", { class: "popup-tile" },
      ...(this.wall?.tiles || []).map((tile, i) => el("option", { value: String(i) }, `${t("split")} ${i + 1}${tile.ref ? ` · ${this.tree.label(tile.ref)}` : ""}`)));
    const free = (this.wall?.tiles || []).findIndex((tile) => !tile.ref);
    tiles.value = String(free < 0 ? 0 : free);
    popup.replaceChildren(
      el("div", { class: "popup-head" },
        el("b", {}, this.tree.label(ref)), state,
        el("button", { class: "popup-close", title: t("close"), onclick: () => this.closePopup() }, "×")),
      video,
      el("div", { class: "popup-foot" }, tiles,
        el("button", { class: "popup-send", onclick: () => { this.closePopup(); this.onPlayOnWall(ref, Number(tiles.value)); } }, t("map_send"))));
    popup.dataset.camera = ref;
    popup.hidden = false;
    const path = ref.split("/").map(encodeURIComponent).join("/");
    this.player = new WhepPlayer(video, `/api/v1/streams/${path}/whep`, {
      onState: (s) => { state.textContent = t(s) || s; popup.dataset.state = s; },
    });
    this.player.start();
  }

  closePopup() {
    if (this.player) { this.player.stop(); this.player = null; }
    const popup = this.$("#map-popup");
    if (popup) { popup.hidden = true; popup.replaceChildren(); delete popup.dataset.camera; }
  }

  relabel() {
    const keep = { node: this.node, doc: this.doc, editing: this.editing, dirty: this.dirty };
    this.closePopup();
    this.build();
    Object.assign(this, keep);
    if (this.doc) { this.img.dataset.src = this.doc.image_url; this.img.src = this.doc.image_url; }
    this.render();
    document.documentElement.lang = getLang();
  }
}
