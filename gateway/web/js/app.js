// The operators' page: login, device tree, video wall, alarms, playback, settings.
import { AlarmList } from "./alarms.js";
import { EMap } from "./emap.js";
import { api, health as readHealth, setUnauthorisedHandler } from "./api.js";
import { applyStatic, getLang, setLang, t } from "./i18n.js";
import { PlanLauncher } from "./plans.js";
import { TourRunner } from "./tours.js";
import { TourEditor } from "./tour_editor.js";
import { Playback } from "./playback.js";
import { Settings } from "./settings.js";
import { DeviceTree } from "./tree.js";
import { VideoWall } from "./wall.js";

const $ = (sel) => document.querySelector(sel);
const state = { user: null, tree: null, wall: null, alarms: null, playback: null, settings: null };
window.gw = state; // for operators' debugging and the browser tests

function showLogin() {
  $("#app-view").hidden = true;
  $("#login-view").hidden = false;
  $("#login-user").focus();
}

async function login(e) {
  e.preventDefault();
  $("#login-error").textContent = "";
  const r = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ username: $("#login-user").value, password: $("#login-pass").value }),
  });
  if (!r.ok) {
    $("#login-error").textContent = r.status === 429 ? t("login_rate") : t("login_failed");
    return;
  }
  $("#login-pass").value = "";
  // A session that expired under a running page: start clean rather than wire everything twice.
  if (state.tree) { location.reload(); return; }
  await boot();
}

function switchView(view) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  for (const v of ["live", "playback", "settings", "map"]) $(`#view-${v}`).hidden = v !== view;
  if (view !== "map") state.emap?.closePopup();
  if (view === "map") state.emap.show();
  if (view === "playback") state.playback.refreshCameras();
  if (view === "settings") state.settings.show();
}

function onLinkage(ev) {
  if (ev.type === "plan") { onPlan(ev); return; }
  const refs = ev.data?.cameras || [];
  if (!refs.length || ev.data?.wall === false) return;
  switchView("live");
  if ($("#auto-switch").checked) state.wall.showGroup(refs);
  else state.wall.highlightGroup(refs);
  const what = $("#auto-switch").checked ? t("wall_switched") : t("wall_highlighted");
  $("#wall-notice").textContent = `${what}${t("colon")}${ev.data?.rule || ""}`;
  setTimeout(() => { $("#wall-notice").textContent = ""; }, 15000);
}

// A plan (预案) launched here or by a linkage rule: its cameras on the wall, its message shown.
function onPlan(ev) {
  const refs = ev.data?.cameras || [];
  if (refs.length) {
    switchView("live");
    if ($("#auto-switch").checked) state.wall.showGroup(refs);
    else state.wall.highlightGroup(refs);
  }
  const message = ev.data?.message ? ` — ${ev.data.message}` : "";
  $("#wall-notice").textContent = `${t("plan")}${t("colon")}${ev.data?.plan || ""}${message}`;
  setTimeout(() => { $("#wall-notice").textContent = ""; }, 30000);
}

async function boot() {
  let me;
  try {
    me = await api("/api/v1/auth/me");
  } catch {
    showLogin();
    return;
  }
  state.user = me.username;
  state.role = me.role;
  $("#login-view").hidden = true;
  $("#app-view").hidden = false;
  $("#user-name").textContent = `${me.username} (${t(me.role)})`;
  const health = await readHealth();
  $("#gw-name").textContent = health.id;
  document.body.dataset.level = health.level || "";

  state.tree = new DeviceTree($("#tree"), $("#tree-search"), { onOpen: (refs) => state.wall.open(refs) });
  await state.tree.load();
  const root = state.tree.root;
  $("#gw-name").textContent = `${t(`level_${root.level || "site"}`)} · ${root.name || root.id}`;
  state.wall = new VideoWall($("#wall"), state.tree, me.username);
  const saved = await state.wall.restore();
  // Whether a linkage switches the wall or only highlights: the operator's own choice, kept
  // with the layout on the gateway.
  const autoKey = `gw_auto_switch_${me.username}`;
  const localAuto = localStorage.getItem(autoKey);
  $("#auto-switch").checked = localAuto !== null ? localAuto !== "0" : saved?.auto_switch !== false;
  $("#auto-switch").onchange = () => localStorage.setItem(autoKey, $("#auto-switch").checked ? "1" : "0");
  state.playback = new Playback($("#view-playback"), state.tree);
  state.settings = new Settings($("#view-settings"), { onChanged: () => state.tree.load() });
  state.alarms = new AlarmList($("#alarm-list"), $("#alarm-type"), $("#alarm-camera"), {
    tree: state.tree,
    onLinkage,
    onPlay: (ev) => { switchView("playback"); state.playback.openEvent(ev); },
    onStatus: (ref, status) => state.tree.setStatus(ref, status),
    onEvent: (ev) => state.emap?.onEvent(ev),
  });
  await state.alarms.load();
  state.plans = new PlanLauncher($("#plan-pick"), $("#plan-launch"), $("#wall-notice"), {
    canLaunch: me.role === "operator" || me.role === "admin",
  });
  await state.plans.load();
  state.tours = new TourRunner(state.wall, state.tree, me.username, {
    pick: $("#tour-pick"), start: $("#tour-start"), pause: $("#tour-pause"), prev: $("#tour-prev"),
    next: $("#tour-next"), stop: $("#tour-stop"), status: $("#tour-status"),
  });
  await state.tours.load();
  state.emap = new EMap($("#view-map"), {
    tree: state.tree, wall: state.wall, canEdit: me.role === "operator" || me.role === "admin",
    onPlayOnWall: (ref, i) => { switchView("live"); state.wall.tiles[i]?.play(ref); state.wall.changed(); },
  });
  state.tourEditor = new TourEditor(state.tree, state.tours, {
    isAdmin: me.role === "admin", editButton: $("#tour-edit"), newButton: $("#tour-new"),
  });
  document.body.dataset.ready = "1"; // everything is wired (the browser tests wait for this)
  setInterval(() => state.tree.load().catch(() => {}), 15000);
}

// Every string on screen follows the language: static ones by data-i18n, built ones re-rendered.
function relabel() {
  $("#lang-toggle").textContent = getLang() === "en" ? "中文" : "English";
  document.title = t("app_title");
  if (!state.user) return;
  $("#user-name").textContent = `${state.user} (${t(state.role)})`;
  state.tree.render();
  state.alarms.render();
  state.wall.relabel();
  state.emap?.relabel();
  const pbVisible = !$("#view-playback").hidden;
  state.playback = new Playback($("#view-playback"), state.tree);
  if (pbVisible) state.playback.refreshCameras();
  state.settings = new Settings($("#view-settings"), { onChanged: () => state.tree.load() });
  if (!$("#view-settings").hidden) state.settings.show();
}

function wireStatic() {
  applyStatic(document);
  document.title = t("app_title");
  $("#lang-toggle").textContent = getLang() === "en" ? "中文" : "English";
  $("#login-form").addEventListener("submit", login);
  document.querySelectorAll("[data-lang]").forEach((b) => b.addEventListener("click", () => { setLang(b.dataset.lang); relabel(); }));
  $("#lang-toggle").addEventListener("click", () => {
    setLang(getLang() === "en" ? "zh-CN" : "en");
    relabel();
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/api/v1/auth/logout", { method: "POST", credentials: "same-origin" });
    localStorage.removeItem("gw_token");
    location.reload();
  });
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => switchView(b.dataset.view)));
  document.querySelectorAll(".layout-btn").forEach((b) => b.addEventListener("click", () => state.wall.setLayout(Number(b.dataset.layout))));
  $("#wall-save").addEventListener("click", async () => {
    try {
      await state.wall.save($("#auto-switch").checked);
      $("#wall-notice").textContent = t("layout_saved");
    } catch (err) {
      $("#wall-notice").textContent = `${t("failed")}: ${err.message}`;
    }
  });
  $("#wall-clear").addEventListener("click", () => state.wall.clearAll());
  setUnauthorisedHandler(showLogin);
}

document.documentElement.lang = getLang();
wireStatic();
boot();
