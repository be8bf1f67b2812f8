// Device tree (设备树): the cascade catalog (市 / 镇 / 村 / cameras), or this gateway's own cameras.
import { api, el, health as readHealth } from "./api.js";
import { t } from "./i18n.js";

const DRAG_TYPE = "application/x-gw-cameras";

export class DeviceTree {
  constructor(container, search, { onOpen }) {
    this.container = container;
    this.search = search;
    this.onOpen = onOpen;
    this.root = null;
    this.cameras = new Map(); // ref (path relative to this gateway) -> camera
    this.collapsed = new Set(); // node paths the operator folded; kept across reloads
    this.nodeNames = new Map(); // node path -> display name (城关镇, 东村)
    search.addEventListener("input", () => this.render());
  }

  async load() {
    let tree;
    try {
      tree = await api("/api/v1/tree");
    } catch (err) {
      if (err.status !== 404 && err.status !== 503) throw err;
      const health = await readHealth();
      const cams = await api("/api/v1/cameras");
      tree = { id: health.id, name: health.id, level: health.level, status: "online", path: "", cameras: cams, children: [] };
    }
    this.root = tree;
    this.cameras.clear();
    this.nodeNames.clear();
    this.index(tree, "");
    this.render();
    return tree;
  }

  // Camera refs are paths relative to this gateway: cam-01, town-a/village-1/cam-01.
  index(node, prefix) {
    node._prefix = node.path ?? prefix;
    if (node._prefix) this.nodeNames.set(node._prefix, node.name || node.id);
    for (const cam of node.cameras || []) {
      cam.ref = cam.path || (node._prefix ? `${node._prefix}/${cam.id}` : cam.id);
      this.cameras.set(cam.ref, cam);
    }
    for (const child of node.children || []) this.index(child, node._prefix ? `${node._prefix}/${child.id}` : child.id);
  }

  // "城关镇 / 东村" for a camera below children; "" for this gateway's own.
  placeOf(ref) {
    const parts = ref.split("/").slice(0, -1);
    return parts.map((_, i) => this.nodeNames.get(parts.slice(0, i + 1).join("/")) || parts[i]).join(" / ");
  }

  // "东村 · 村口": a camera below a child carries its place (the nearest node's name), so two
  // villages' 村口 can be told apart on the wall and in alarms; this gateway's own keep their name.
  label(ref) {
    const cam = this.cameras.get(ref);
    const parts = ref.split("/");
    const name = cam?.name || parts[parts.length - 1];
    if (parts.length < 2) return name;
    const place = this.nodeNames.get(parts.slice(0, -1).join("/")) || parts[parts.length - 2];
    return `${place} · ${name}`;
  }

  camerasUnder(node) {
    const out = [...(node.cameras || [])];
    for (const c of node.children || []) out.push(...this.camerasUnder(c));
    return out;
  }

  setStatus(ref, status) {
    const cam = this.cameras.get(ref);
    if (cam && cam.status !== status) { cam.status = status; this.render(); }
  }

  matches(cam, q) {
    if (!q) return true;
    return [cam.name, cam.id, cam.location, cam.division, cam.ref].some((s) => (s || "").toLowerCase().includes(q));
  }

  render() {
    if (!this.root) return;
    const q = this.search.value.trim().toLowerCase();
    this.container.replaceChildren(this.renderNode(this.root, q));
  }

  renderNode(node, q) {
    const all = this.camerasUnder(node);
    const online = all.filter((c) => c.status === "online").length;
    const path = node._prefix || "";
    const wrap = el("div", {
      class: `tree-node${this.collapsed.has(path) && !q ? " collapsed" : ""}`,
      role: "treeitem",
      dataset: { path, level: node.level || "site" },
    });
    const row = el("div", { class: "row", draggable: "true", title: t("drag_node_hint") },
      el("span", { class: "caret" }),
      el("span", { class: `dot ${node.status || "unknown"}`, title: t(node.status || "unknown") }),
      el("span", { class: `level level-${node.level || "site"}` }, t(`level_${node.level || "site"}`)),
      el("span", { class: "name" }, node.name || node.id),
      el("span", { class: "count", title: `${t("online")} / ${t("cameras_total")}` }, `${online}/${all.length}`));
    row.addEventListener("click", () => {
      wrap.classList.toggle("collapsed");
      if (wrap.classList.contains("collapsed")) this.collapsed.add(path); else this.collapsed.delete(path);
    });
    row.addEventListener("dblclick", () => this.onOpen(all.map((c) => c.ref)));
    row.addEventListener("dragstart", (e) => {
      e.dataTransfer.effectAllowed = "copy";
      e.dataTransfer.setData(DRAG_TYPE, JSON.stringify(all.map((c) => c.ref)));
    });
    const children = el("div", { class: "children", role: "group" });
    for (const cam of node.cameras || []) {
      if (!this.matches(cam, q)) continue;
      const item = el("div", {
        class: "tree-cam", draggable: "true", role: "treeitem",
        title: [cam.location, cam.ref].filter(Boolean).join(" · "),
        dataset: { camera: cam.ref, status: cam.status || "unknown" },
      },
        el("span", { class: `dot ${cam.status || "unknown"}` }),
        el("span", { class: "cam-icon" }, cam.ptz ? "◉" : "▣"),
        el("span", { class: "name" }, cam.name || cam.id),
        el("span", { class: `count st-${cam.status || "unknown"}` }, t(cam.status || "unknown")));
      item.addEventListener("dragstart", (e) => {
        e.dataTransfer.effectAllowed = "copy";
        e.dataTransfer.setData(DRAG_TYPE, JSON.stringify([cam.ref]));
      });
      item.addEventListener("dblclick", () => this.onOpen([cam.ref]));
      children.append(item);
    }
    for (const child of node.children || []) {
      const sub = this.renderNode(child, q);
      if (!q || sub.querySelector(".tree-cam")) children.append(sub);
    }
    wrap.append(row, children);
    return wrap;
  }
}

export { DRAG_TYPE };
