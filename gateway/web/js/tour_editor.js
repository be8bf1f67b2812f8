// Tour editor (轮巡编辑): name, cameras and tree nodes in order, split layout, dwell time,
// shared (admins) or personal; create, edit, delete. Mistakes are said in words before
// anything is sent (no name, no camera, an item not in the tree); the API's own refusals
// (a name taken, outside one's area) are shown as they come.
import { api, el } from "./api.js";
import { applyStatic, t } from "./i18n.js";

const LAYOUTS = [1, 4, 9, 16];

export class TourEditor {
  constructor(tree, runner, { isAdmin, editButton, newButton }) {
    Object.assign(this, { tree, runner, isAdmin });
    this.tour = null; // the tour being edited, null for a new one
    this.items = [];
    this.dialog = this.build();
    document.body.append(this.dialog);
    newButton.addEventListener("click", () => this.open(null));
    editButton.addEventListener("click", () => {
      const tour = runner.tours.find((x) => String(x.id) === runner.pick.value);
      if (!tour) { runner.status.textContent = t("choose_tour"); return; }
      this.open(tour);
    });
  }

  build() {
    const $ = (id) => this.dialog.querySelector(`#${id}`);
    const dialog = el("dialog", { id: "tour-editor", class: "tour-editor" },
      el("form", { method: "dialog" },
        el("h3", { id: "te-title" }),
        el("label", {}, el("span", { "data-i18n": "name" }), el("input", { id: "te-name", maxlength: 64 })),
        el("div", { class: "te-items" },
          el("span", { "data-i18n": "tour_items" }),
          el("ol", { id: "te-items" }),
          el("input", { id: "te-item", list: "te-options", "data-i18n-placeholder": "tour_item_hint", size: 32 }),
          el("datalist", { id: "te-options" }),
          el("button", { type: "button", id: "te-add", "data-i18n": "add" })),
        el("label", {}, el("span", { "data-i18n": "layout" }),
          el("select", { id: "te-layout" }, ...LAYOUTS.map((n) => el("option", { value: String(n) }, String(n))))),
        el("label", {}, el("span", { "data-i18n": "tour_dwell" }),
          el("input", { id: "te-dwell", type: "number", min: 3, max: 3600, step: 1 })),
        el("label", { class: "opt" }, el("input", { id: "te-shared", type: "checkbox" }),
          el("span", { "data-i18n": "tour_shared" })),
        el("div", { id: "te-error", class: "error", role: "alert" }),
        el("div", { class: "te-buttons" },
          el("button", { type: "button", id: "te-save", "data-i18n": "save" }),
          el("button", { type: "button", id: "te-delete", "data-i18n": "remove" }),
          el("button", { type: "button", id: "te-cancel", "data-i18n": "cancel" }))));
    this.dialog = dialog;
    $("te-add").addEventListener("click", () => this.addItem());
    $("te-item").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); this.addItem(); } });
    $("te-save").addEventListener("click", () => this.save());
    $("te-delete").addEventListener("click", () => this.remove());
    $("te-cancel").addEventListener("click", () => dialog.close());
    dialog.addEventListener("input", () => this.error(""));  // a fix in progress: the old error goes
    this.$ = $;
    return dialog;
  }

  // Every camera and every node of the tree, by path, with its name.
  choices() {
    const out = new Map();
    for (const [prefix, name] of this.tree.nodeNames) out.set(prefix, `${name} (${t("tour_node")})`);
    for (const ref of this.tree.cameras.keys()) out.set(ref, this.tree.label(ref));
    return out;
  }

  open(tour) {
    this.tour = tour;
    this.items = tour ? [...tour.items] : [];
    const $ = this.$;
    applyStatic(this.dialog);
    $("te-title").textContent = t(tour ? "tour_edit" : "tour_new");
    $("te-name").value = tour ? tour.name : "";
    $("te-layout").value = String(tour ? tour.layout : 4);
    $("te-dwell").value = String(tour ? tour.dwell_s : 15);
    $("te-shared").checked = tour ? Boolean(tour.shared) : false;
    $("te-shared").disabled = !this.isAdmin;
    $("te-delete").hidden = !tour;
    $("te-error").textContent = "";
    $("te-item").value = "";
    $("te-options").replaceChildren(...[...this.choices()].map(([value, label]) => el("option", { value }, label)));
    this.render();
    this.dialog.showModal();
  }

  render() {
    const names = this.choices();
    const move = (i, by) => {
      const j = i + by;
      if (j < 0 || j >= this.items.length) return;
      [this.items[i], this.items[j]] = [this.items[j], this.items[i]];
      this.render();
    };
    this.$("te-items").replaceChildren(...this.items.map((item, i) => el("li", { dataset: { item } },
      el("span", { class: "te-label" }, `${names.get(item) || item} · ${item}`),
      el("button", { type: "button", class: "te-up", title: t("move_up"), onclick: () => move(i, -1) }, "↑"),
      el("button", { type: "button", class: "te-down", title: t("move_down"), onclick: () => move(i, 1) }, "↓"),
      el("button", { type: "button", class: "te-remove", title: t("remove"),
        onclick: () => { this.items.splice(i, 1); this.render(); } }, "✕"))));
  }

  addItem() {
    const value = this.$("te-item").value.trim().replace(/^\/+|\/+$/g, "");
    if (!value) return;
    if (!this.choices().has(value)) { this.error(`${value}${t("colon")}${t("tour_unknown_item")}`); return; }
    if (!this.items.includes(value)) this.items.push(value);
    this.$("te-item").value = "";
    this.error("");
    this.render();
  }

  error(text) { this.$("te-error").textContent = text; }

  async save() {
    const $ = this.$;
    const body = {
      name: $("te-name").value.trim(),
      items: this.items,
      layout: Number($("te-layout").value),
      dwell_s: Number($("te-dwell").value),
      shared: $("te-shared").checked,
    };
    this.error("");
    if (!body.name) { this.error(t("tour_no_name")); return; }
    if (!body.items.length) { this.error(t("tour_no_cameras")); return; }
    if (!(body.dwell_s >= 3 && body.dwell_s <= 3600)) { this.error(t("tour_bad_dwell")); return; }
    try {
      const saved = this.tour
        ? await api(`/api/v1/tours/${this.tour.id}`, { method: "PUT", body })
        : await api("/api/v1/tours", { method: "POST", body });
      this.dialog.close();
      await this.reload(saved.id, t("tour_saved"));
    } catch (err) { this.error(`${t("failed")}${t("colon")}${err.message}`); }
  }

  async remove() {
    if (!this.tour || !window.confirm(`${t("confirm_remove")} ${this.tour.name}`)) return;
    try {
      await api(`/api/v1/tours/${this.tour.id}`, { method: "DELETE" });
      if (this.runner.tour && this.runner.tour.id === this.tour.id) this.runner.stop();
      this.dialog.close();
      await this.reload(null, t("tour_deleted"));
    } catch (err) { this.error(`${t("failed")}${t("colon")}${err.message}`); }
  }

  async reload(id, note) {
    const running = this.runner.tour;
    if (!running) {
      await this.runner.load();
    } else {
      // keep the running tour going; only the list changes
      try { this.runner.tours = await api("/api/v1/tours"); } catch { /* keep the old list */ }
      const pick = this.runner.pick;
      pick.replaceChildren(el("option", { value: "" }, t("choose_tour")),
        ...this.runner.tours.map((x) => el("option", { value: String(x.id) }, `${x.shared ? "★ " : ""}${x.name}`)));
    }
    if (id !== null) this.runner.pick.value = String(id);
    this.runner.status.textContent = note;
  }
}
