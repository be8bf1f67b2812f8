// Audit log (操作日志) in the settings: search by user, camera, action and time; CSV export.
// Admins see every entry in their area; operators and viewers their own (the API decides).
import { api, el, fmtTime } from "./api.js";
import { getLang, t } from "./i18n.js";

function localToIso(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function detailText(detail) {
  return Object.entries(detail || {})
    .filter(([k]) => k !== "session")
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
}

export async function renderAudit(body) {
  const user = el("input", { class: "audit-user", placeholder: t("username"), size: 10 });
  const camera = el("input", { class: "audit-camera", placeholder: t("camera"), size: 16 });
  const action = el("select", { class: "audit-action" }, el("option", { value: "" }, t("all_types")));
  const since = el("input", { class: "audit-since", type: "datetime-local" });
  const until = el("input", { class: "audit-until", type: "datetime-local" });
  const table = el("table", { class: "list audit" });
  const csv = el("a", { class: "audit-csv", download: "" }, t("export_csv"));
  const status = el("span", { class: "hint" });

  const params = () => {
    const q = new URLSearchParams();
    if (user.value.trim()) q.set("user", user.value.trim());
    if (camera.value.trim()) q.set("camera", camera.value.trim());
    if (action.value) q.set("action", action.value);
    if (localToIso(since.value)) q.set("since", localToIso(since.value));
    if (localToIso(until.value)) q.set("until", localToIso(until.value));
    return q;
  };
  const label = (entry) => {
    const both = entry.action_label || entry.action;
    const [zh, en] = both.split(" / ");
    return getLang() === "en" ? en || zh : zh;
  };

  const search = async () => {
    const q = params();
    q.set("limit", "500");
    const out = await api(`/api/v1/audit?${q}`);
    if (action.options.length === 1) {
      for (const [key, text] of Object.entries(out.actions)) {
        const [zh, en] = text.split(" / ");
        action.append(el("option", { value: key }, getLang() === "en" ? en : zh));
      }
    }
    const token = localStorage.getItem("gw_token");
    const csvQuery = params();
    if (token) csvQuery.set("access_token", token);
    csv.href = `/api/v1/audit/export.csv?${csvQuery}`;
    status.textContent = `${out.entries.length} · ${t("retention")} ${out.retention_days} ${t("days")}`;
    table.replaceChildren(
      el("tr", {}, ...["time", "username", "type", "camera", "status", "address", "detail"].map((k) => el("th", {}, t(k)))),
      ...out.entries.map((e) => el("tr", { class: e.ok ? "" : "error", dataset: { action: e.action, user: e.user } },
        el("td", {}, fmtTime(e.time)), el("td", {}, e.user), el("td", {}, label(e)), el("td", {}, e.camera),
        el("td", {}, e.ok ? "✓" : "✗"), el("td", {}, e.client), el("td", { class: "detail" }, detailText(e.detail)))));
  };

  const go = el("button", { class: "audit-search", onclick: () => search().catch((err) => { status.textContent = `${t("failed")}: ${err.message}`; }) }, t("search_btn"));
  body.replaceChildren(el("div", { class: "form-row" }, user, camera, action, since, until, go, csv, status), table);
  await search();
}
