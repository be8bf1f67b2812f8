// Evidence export page (录像导出): choose cameras anywhere in the tree and a span, follow the
// job's progress, download the signed ZIP, delete it (which releases its retention locks).
import { api, el, fmtTime, setUnauthorisedHandler } from "./api.js";
import { STRINGS, applyStatic, getLang, setLang, t } from "./i18n.js";

Object.assign(STRINGS["zh-CN"], {
  ex_title: "录像导出", ex_back: "返回监控页面", ex_start: "开始时间", ex_end: "结束时间",
  ex_reason: "事由 / 案件编号", ex_submit: "开始导出", ex_key: "签名公钥指纹",
  ex_hint: "导出文件含签名清单；用 gateway export verify 文件.zip 校验。",
  ex_space: "导出空间", ex_none_selected: "请选择摄像机", ex_created: "创建", ex_user: "导出人",
  ex_cameras: "摄像机", ex_span: "时段", ex_state: "状态", ex_progress: "进度", ex_actions: "操作",
  ex_download: "下载", ex_delete: "删除", ex_confirm_delete: "删除该导出？其录像将不再受保护。",
  ex_recorded: "录像", ex_requested: "请求", ex_gaps: "断档", ex_seconds: "秒",
  ex_queued: "排队中", ex_running: "导出中", ex_done: "完成", ex_partial: "部分完成",
  ex_empty: "无录像", ex_failed: "失败", ex_pending: "等待",
});
Object.assign(STRINGS.en, {
  ex_title: "Evidence export", ex_back: "Back to monitoring", ex_start: "Start", ex_end: "End",
  ex_reason: "Reason / case number", ex_submit: "Export", ex_key: "Signing key fingerprint",
  ex_hint: "The ZIP holds a signed manifest; check it with gateway export verify FILE.zip.",
  ex_space: "Export space", ex_none_selected: "Choose at least one camera", ex_created: "Created",
  ex_user: "Exported by", ex_cameras: "Cameras", ex_span: "Span", ex_state: "State",
  ex_progress: "Progress", ex_actions: "Actions", ex_download: "Download", ex_delete: "Delete",
  ex_confirm_delete: "Delete this export? Its footage will no longer be protected.",
  ex_recorded: "recorded", ex_requested: "requested", ex_gaps: "gaps", ex_seconds: "s",
  ex_queued: "queued", ex_running: "running", ex_done: "done", ex_partial: "partly done",
  ex_empty: "nothing recorded", ex_failed: "failed", ex_pending: "waiting",
});

const $ = (id) => document.getElementById(id);
let timer = null;

function localInput(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}:${p(date.getSeconds())}`;
}

function cameras(node, out = []) {
  for (const cam of node.cameras || []) out.push({ ...cam, place: node.name || node.id });
  for (const child of node.children || []) cameras(child, out);
  return out;
}

async function loadCameras() {
  const tree = await api("/api/v1/tree");
  const box = $("export-cams");
  box.replaceChildren(...cameras(tree).map((cam) => el("label", { dataset: { path: cam.path } },
    el("input", { type: "checkbox", value: cam.path, class: "export-cam" }), " ",
    el("span", { class: "place" }, cam.place), " · ", cam.name || cam.id, " ",
    el("small", { class: "hint" }, `(${cam.path}) ${cam.status === "online" ? t("online") : t("offline")}`))));
}

function filterCameras() {
  const q = $("export-filter").value.trim().toLowerCase();
  for (const label of $("export-cams").children) label.hidden = q && !label.textContent.toLowerCase().includes(q);
}

function stateText(state) { return t(`ex_${state}`); }

// The API's messages read "English / 中文": show the operator's language.
export function localise(message) {
  const text = String(message || "");
  const cut = text.lastIndexOf(" / ");
  if (cut < 0) return text;
  return getLang() === "en" ? text.slice(0, cut) : text.slice(cut + 3);
}

function downloadHref(job) {
  const token = localStorage.getItem("gw_token");
  return token ? `${job.download}?access_token=${encodeURIComponent(token)}` : job.download;
}

function camResult(cam) {
  const secs = `${t("ex_recorded")} ${Math.round(cam.recorded_seconds)}/${Math.round(cam.requested_seconds)} ${t("ex_seconds")}`;
  const gaps = cam.gaps.length && cam.state !== "empty" ? `, ${t("ex_gaps")} ${cam.gaps.length}` : "";
  return el("span", { class: `cam-result st-${cam.state}`, dataset: { path: cam.path, state: cam.state } },
    `${cam.place} · ${cam.name || cam.path}: ${stateText(cam.state)} (${secs}${gaps})`,
    cam.reason && cam.state === "failed" ? ` — ${localise(cam.reason)}` : "");
}

function row(job) {
  const active = job.state === "queued" || job.state === "running";
  const actions = el("td", {});
  if (job.download) actions.append(el("a", { class: "export-download button", href: downloadHref(job), download: "" }, t("ex_download")), " ");
  actions.append(el("button", { type: "button", class: "export-delete", onclick: () => remove(job) }, t("ex_delete")));
  return el("tr", { dataset: { id: job.id, state: job.state } },
    el("td", {}, fmtTime(job.created), el("br"), el("small", { class: "hint" }, job.id)),
    el("td", {}, job.user),
    el("td", {}, job.title || ""),
    el("td", {}, fmtTime(job.start), " – ", fmtTime(job.end)),
    el("td", {}, ...job.cameras.map(camResult)),
    el("td", { class: `st-${job.state} export-state` }, stateText(job.state), job.error && !active ? el("div", { class: "hint" }, localise(job.error)) : null),
    el("td", {}, el("progress", { max: "100", value: String(Math.round(job.progress * 100)) }), ` ${Math.round(job.progress * 100)}%`),
    actions);
}

async function refresh() {
  const out = await api("/api/v1/exports");
  $("export-key").textContent = out.key.fingerprint;
  const mb = (b) => (b / 1e6).toFixed(1);
  $("export-space").textContent = `${t("ex_space")}: ${mb(out.space.used_bytes)} / ${mb(out.space.max_bytes)} MB`;
  const head = el("tr", {}, ...["ex_created", "ex_user", "ex_reason", "ex_span", "ex_cameras", "ex_state", "ex_progress", "ex_actions"].map((k) => el("th", {}, t(k))));
  $("export-jobs").replaceChildren(head, ...out.exports.map(row));
  const active = out.exports.some((j) => j.state === "queued" || j.state === "running");
  clearTimeout(timer);
  if (active) timer = setTimeout(() => refresh().catch(() => {}), 1000);
}

async function remove(job) {
  if (!confirm(t("ex_confirm_delete"))) return;
  await api(`/api/v1/exports/${job.id}`, { method: "DELETE" });
  await refresh();
}

async function submit(event) {
  event.preventDefault();
  $("export-error").textContent = "";
  const chosen = [...document.querySelectorAll(".export-cam:checked")].map((c) => c.value);
  if (!chosen.length) { $("export-error").textContent = t("ex_none_selected"); return; }
  const iso = (v) => new Date(v).toISOString();
  try {
    await api("/api/v1/exports", { method: "POST", body: {
      cameras: chosen, start: iso($("export-start").value), end: iso($("export-end").value), title: $("export-title").value.trim(),
    } });
  } catch (err) {
    $("export-error").textContent = localise(err.message);
    return;
  }
  await refresh();
}

async function main() {
  setUnauthorisedHandler(() => { location.href = "index.html"; });
  setLang(getLang());
  $("export-lang").textContent = getLang() === "en" ? "中文" : "English";
  $("export-lang").onclick = () => { setLang(getLang() === "en" ? "zh-CN" : "en"); location.reload(); };
  // export.html?camera=PATH&camera=PATH&start=ISO&end=ISO preselects (e.g. from playback).
  const query = new URLSearchParams(location.search);
  const asDate = (v) => { const d = v ? new Date(v) : null; return d && !Number.isNaN(d.getTime()) ? d : null; };
  const end = asDate(query.get("end")) || new Date();
  const start = asDate(query.get("start")) || new Date(end.getTime() - 10 * 60 * 1000);
  $("export-end").value = localInput(end);
  $("export-start").value = localInput(start);
  $("export-filter").oninput = filterCameras;
  $("export-form").onsubmit = submit;
  applyStatic(document);
  await Promise.all([loadCameras(), refresh()]);
  for (const path of query.getAll("camera")) {
    const box = [...document.querySelectorAll(".export-cam")].find((c) => c.value === path);
    if (box) box.checked = true;
  }
  document.body.dataset.ready = "1";
}

main().catch((err) => { $("export-error").textContent = err.message; });
