// Device tree (设备树): the cascade catalog, or this gateway's own cameras.
import { api, el } from "./api.js";
import { t } from "./i18n.js";

export class DeviceTree {
  constructor(container, search, { onOpen }) {
    this.container = container;
    this.search = search;
    this.onOpen = onOpen;
    this.root = null;
    this.cameras = new Map(); // ref -> camera
    search.addEventListener("input", () => this.render());
  }

  async load() {
    let tree;
    try {
      tree = await api("/api/v1/tree");
    } catch (err) {
      if (err.status !== 404) throw err;
      const health = await api("/api/v1/health");
      const cams = await api("/api/v1/cameras");
      tree = { id: health.id, name: health.id, level: health.level, status: "online", cameras: cams, children: [] };
    }
    this.root = tree;
    this.cameras.clear();
    this.index(tree, "");
    this.render();
    return tree;
  }

  // Camera refs are paths relative to this gateway: cam-01, village-1/cam-01.
  index(node, prefix) {
    node._prefix = prefix;
    for (const cam of node.cameras || []) {
      cam.ref = cam.ref || (prefix ? `${prefix}/${cam.id}` : cam.id);
      this.cameras.set(cam.ref, cam);
    }
    for (const child of node.children || []) this.index(child, prefix ? `${prefix}/${child.id}` : child.id);
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
    return [cam.name, cam.id, cam.location, cam.ref].some((s) => (s || "").toLowerCase().includes(q));
  }

  render() {
    if (!this.root) return;
    const q = this.search.value.trim().toLowerCase();
    this.container.replaceChildren(this.renderNode(this.root, q));
  }

  renderNode(node, q) {
    const all = this.camerasUnder(node);
    const online = all.filter((c) => c.status === "online").length;
    const wrap = el("div", { class: "tree-node", role: "treeitem", dataset: { path: node._prefix || "" } });
    const row = el("div", { class: "row", draggable: "true" },
      el("span", { class: `dot ${node.status || "unknown"}` }),
      el("span", { class: "level" }, t(`level_${node.level || "site"}`)),
      el("span", { class: "name" }, node.name || node.id),
      el("span", { class: "count" }, `${online}/${all.length}`));
    row.addEventListener("click", () => wrap.classList.toggle("collapsed"));
    row.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-gw-cameras", JSON.stringify(all.map((c) => c.ref)));
    });
    const children = el("div", { class: "children" });
    for (const cam of node.cameras || []) {
      if (!this.matches(cam, q)) continue;
      const item = el("div", { class: "tree-cam", draggable: "true", role: "treeitem", title: cam.location || "", dataset: { camera: cam.ref } },
        el("span", { class: `dot ${cam.status || "unknown"}` }),
        el("span", {}, cam.name || cam.id),
        el("span", { class: "count" }, t(cam.status || "unknown")));
      item.addEventListener("dragstart", (e) => {
        e.dataTransfer.setData("application/x-gw-cameras", JSON.stringify([cam.ref]));
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
