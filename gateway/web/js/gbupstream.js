// Upper platforms (上级平台, GB/T 28181) in the settings: each platform's live state (registering /
// online / offline), last keepalive, last error, clock offset from the 200 OK's Date, channels
// pushed and streams playing; add, edit and delete through /api/v1/gb28181/upstream.
// The password is write-only: the API says only whether one is set, and an empty field keeps it.
import { api, el, fmtTime } from "./api.js";
import { STRINGS, t } from "./i18n.js";

// This page's strings live here, merged into the shared tables when the module loads.
Object.assign(STRINGS["zh-CN"], {
  settings_gb28181: "上级平台",
  gb_server_id: "上级平台编号", gb_domain: "SIP 域", gb_host: "平台 IP", gb_port: "平台端口",
  gb_transport: "传输协议", gb_device_id: "设备编号（本级）", gb_password: "密码",
  gb_civil_code: "本级行政区划", gb_expires: "注册有效期（秒）", gb_keepalive: "心跳周期（秒）",
  gb_misses: "心跳超时次数", gb_charset: "字符集", gb_share: "共享范围", gb_local_port: "本地 SIP 端口",
  gb_state: "状态", gb_last_keepalive: "最后心跳", gb_clock: "时钟偏差", gb_channels: "已推送通道",
  gb_streams: "正在播放", gb_last_error: "最后错误", gb_add: "添加上级平台", gb_edit: "编辑上级平台",
  gb_password_set: "已设置（留空不修改）", gb_password_none: "未设置", gb_not_configured:
    "本网关未启用国标级联：在配置文件中加入 gb28181: 后重启", gb_confirm_remove: "删除上级平台",
  gb_registering: "注册中", gb_online: "在线", gb_offline: "离线", gb_disabled: "已停用", gb_stopped: "已停止",
  gb_share_hint: "* 表示全部；或摄像机路径、子树如 village-1/*，逗号分隔", gb_id_hint: "本地名称，如 county",
  gb_ahead: "平台快", gb_behind: "平台慢",
});
Object.assign(STRINGS.en, {
  settings_gb28181: "Upper platforms",
  gb_server_id: "Platform ID", gb_domain: "SIP domain", gb_host: "Platform IP", gb_port: "Platform port",
  gb_transport: "Transport", gb_device_id: "Our device ID", gb_password: "Password",
  gb_civil_code: "Civil code", gb_expires: "Register expiry (s)", gb_keepalive: "Keepalive (s)",
  gb_misses: "Keepalive misses", gb_charset: "Charset", gb_share: "Shared", gb_local_port: "Local SIP port",
  gb_state: "State", gb_last_keepalive: "Last keepalive", gb_clock: "Clock offset", gb_channels: "Channels pushed",
  gb_streams: "Streams playing", gb_last_error: "Last error", gb_add: "Add an upper platform", gb_edit: "Edit upper platform",
  gb_password_set: "set (leave empty to keep)", gb_password_none: "not set", gb_not_configured:
    "GB/T 28181 is not enabled on this gateway: add gb28181: to its config and restart", gb_confirm_remove: "Delete upper platform",
  gb_registering: "Registering", gb_online: "Online", gb_offline: "Offline", gb_disabled: "Disabled", gb_stopped: "Stopped",
  gb_share_hint: "* for everything; or camera paths and subtrees such as village-1/*, comma-separated", gb_id_hint: "Local name, e.g. county",
  gb_ahead: "platform ahead", gb_behind: "platform behind",
});

const BASE = "/api/v1/gb28181/upstream";
const enc = encodeURIComponent;
const REFRESH_MS = 2000;

// Form fields: [key, label, kind, extra attributes].
const FIELDS = [
  ["id", "ID", "text", { placeholder: "county", pattern: "[a-z0-9][a-z0-9_-]*" }],
  ["server_id", "gb_server_id", "text", { placeholder: "34020000002000000001", maxlength: 20, size: 22 }],
  ["domain", "gb_domain", "text", { placeholder: "3402000000", maxlength: 10, size: 12 }],
  ["host", "gb_host", "text", { placeholder: "192.168.1.10" }],
  ["port", "gb_port", "number", { min: 1, max: 65535, style: "width:6em" }],
  ["transport", "gb_transport", ["udp", "tcp"]],
  ["device_id", "gb_device_id", "text", { placeholder: "34020000002000000002", maxlength: 20, size: 22 }],
  ["password", "gb_password", "password", { autocomplete: "new-password" }],
  ["civil_code", "gb_civil_code", "text", { placeholder: "340200", maxlength: 8, size: 10 }],
  ["expires_s", "gb_expires", "number", { min: 60, max: 86400, style: "width:6em" }],
  ["keepalive_s", "gb_keepalive", "number", { min: 1, max: 3600, style: "width:6em" }],
  ["keepalive_misses", "gb_misses", "number", { min: 1, max: 100, style: "width:5em" }],
  ["charset", "gb_charset", ["gb2312", "gb18030", "utf-8"]],
  ["local_port", "gb_local_port", "number", { min: 0, max: 65535, style: "width:6em" }],
  ["share", "gb_share", "text", { size: 30 }],
  ["enabled", "enabled", "checkbox", {}],
];
const DEFAULTS = { port: 5060, transport: "udp", expires_s: 3600, keepalive_s: 60, keepalive_misses: 3, charset: "gb2312", local_port: 0, share: "*", enabled: true };

function stateText(state) { return t(`gb_${state}`); }

// Seconds as the platform's Date header differs from ours, with a readable size when large.
function clockText(offset) {
  if (offset === null || offset === undefined) return "";
  const sign = offset > 0 ? "+" : "";
  const abs = Math.abs(offset);
  const size = abs < 120 ? "" : abs < 7200 ? ` ${Math.round(abs / 60)} min` : abs < 172800 ? ` ${(abs / 3600).toFixed(1)} h` : ` ${(abs / 86400).toFixed(1)} d`;
  const side = abs < 1 ? "" : ` (${t(offset > 0 ? "gb_ahead" : "gb_behind")}${size})`;
  return `${sign}${offset.toFixed(1)} s${side}`;
}

function statusCells(s) {
  return [
    el("td", { class: `gb-state st-${s.state === "online" ? "online" : s.state === "registering" ? "unknown" : "offline"}`, dataset: { state: s.state } }, stateText(s.state)),
    el("td", { class: "gb-keepalive" }, fmtTime(s.last_keepalive)),
    el("td", { class: "gb-clock" }, clockText(s.clock_offset_s)),
    el("td", { class: "gb-channels" }, String(s.channels_pushed ?? "")),
    el("td", { class: "gb-streams" }, String(s.streams_playing ?? "")),
    el("td", { class: "gb-error error" }, s.last_error || ""),
  ];
}

function form(current, onSubmit, onCancel) {
  const inputs = {};
  const rows = FIELDS.map(([key, label, kind, attrs]) => {
    let input;
    if (Array.isArray(kind)) {
      input = el("select", { name: key }, ...kind.map((v) => el("option", { value: v }, v)));
    } else if (kind === "checkbox") {
      input = el("input", { name: key, type: "checkbox" });
    } else {
      input = el("input", { name: key, type: kind, ...attrs });
    }
    const value = current ? current[key] : DEFAULTS[key];
    if (kind === "checkbox") input.checked = value !== false;
    else if (key === "share") input.value = Array.isArray(value) ? value.join(", ") : (value ?? "");
    else if (key === "password") {
      input.value = ""; // never shown, never sent back unless typed
      input.placeholder = current ? t(current.password_set ? "gb_password_set" : "gb_password_none") : "";
    } else if (value !== undefined && value !== null) input.value = String(value);
    if (key === "id" && current) input.disabled = true;
    inputs[key] = input;
    const hint = key === "share" ? t("gb_share_hint") : key === "id" ? t("gb_id_hint") : "";
    return el("label", { class: `gb-field gb-${key}` }, el("span", {}, label === "ID" ? "ID" : t(label)), input,
      hint ? el("span", { class: "hint" }, hint) : null);
  });
  const body = () => {
    const out = {};
    for (const [key, , kind] of FIELDS) {
      const input = inputs[key];
      if (key === "id" && current) continue;
      if (key === "password") { if (input.value) out.password = input.value; continue; }
      if (kind === "checkbox") out[key] = input.checked;
      else if (kind === "number") { if (input.value !== "") out[key] = Number(input.value); }
      else if (key === "share") out.share = input.value.split(/[\s,，]+/).filter(Boolean);
      else if (input.value !== "" || current) out[key] = input.value.trim();
    }
    return out;
  };
  return el("form", { class: "gb-form", onsubmit: (e) => { e.preventDefault(); onSubmit(body()); } },
    el("h4", {}, t(current ? "gb_edit" : "gb_add"), current ? ` ${current.id}` : ""),
    el("div", { class: "gb-fields" }, ...rows),
    el("div", { class: "form-row" }, el("button", { type: "submit", class: "gb-submit" }, t(current ? "save" : "add")),
      current ? el("button", { type: "button", class: "gb-cancel", onclick: onCancel }, t("cancel")) : null));
}

// Renders into ``body``; ``attempt(fn)`` runs an action and shows saved/failed in the settings note.
export async function renderUpstream(body, attempt) {
  let editing = null;
  const table = el("table", { class: "list gb-upstream" });
  const formBox = el("div", { class: "gb-form-box" });

  const draw = (data) => {
    const head = ["ID", "gb_server_id", "address", "gb_device_id", "gb_state", "gb_last_keepalive", "gb_clock", "gb_channels", "gb_streams", "gb_last_error", ""];
    table.replaceChildren(
      el("tr", {}, ...head.map((k) => el("th", {}, k === "ID" || !k ? k : t(k)))),
      ...data.upstream.map((u) => el("tr", { dataset: { upstream: u.id } },
        el("td", {}, u.id), el("td", {}, u.server_id), el("td", {}, `${u.host}:${u.port}/${u.transport.toUpperCase()}`),
        el("td", {}, u.device_id), ...statusCells(u.status),
        el("td", {},
          el("button", { class: "gb-edit-btn", onclick: () => { editing = u; showForm(); } }, t("edit")), " ",
          el("button", { class: "remove", onclick: () => attempt(async () => {
            if (!confirm(`${t("gb_confirm_remove")} ${u.id}?`)) return false;
            await api(`${BASE}/${enc(u.id)}`, { method: "DELETE" });
            if (editing && editing.id === u.id) { editing = null; showForm(); }
            await refresh();
          }) }, t("remove"))))));
  };

  const refresh = async () => {
    const data = await api(BASE);
    if (!data.configured) {
      body.replaceChildren(el("p", { class: "hint gb-not-configured" }, t("gb_not_configured")));
      return false;
    }
    draw(data);
    return true;
  };

  const showForm = () => {
    formBox.replaceChildren(form(editing, (changes) => attempt(async () => {
      if (editing) await api(`${BASE}/${enc(editing.id)}`, { method: "PATCH", body: changes });
      else await api(BASE, { method: "POST", body: changes });
      editing = null;
      showForm();
      await refresh();
    }), () => { editing = null; showForm(); }));
  };

  if (!(await refresh())) return;
  showForm();
  body.replaceChildren(table, formBox);
  // Live status while the page is shown; stops once another section replaced it.
  const timer = setInterval(() => {
    if (!table.isConnected) { clearInterval(timer); return; }
    api(BASE).then((data) => { if (data.configured && table.isConnected) draw(data); }).catch(() => {});
  }, REFRESH_MS);
}
