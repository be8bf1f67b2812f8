// All user-facing strings, one table per language. zh-CN is the default.
export const STRINGS = {
  "zh-CN": {
    app_title: "边缘视频网关",
    login_title: "登录", username: "用户名", password: "密码", login: "登录", logout: "退出",
    login_failed: "用户名或密码错误", login_rate: "登录尝试过多，请稍后再试",
    nav_live: "实时预览", nav_playback: "录像回放", nav_settings: "设置",
    device_tree: "设备树", search: "搜索名称或位置", online: "在线", offline: "离线",
    unauthorised: "未授权", error: "故障", unknown: "未知",
    level_city: "市", level_county: "区县", level_town: "镇", level_village: "村", level_site: "站点",
    layout: "分屏", split: "画面", clear_wall: "清空", save_layout: "保存布局", layout_saved: "布局已保存",
    drop_here: "拖动摄像机到此处", main_stream: "主码流", low_stream: "低码率",
    served_passthrough: "直通", served_sub: "子码流", served_transcode: "转码",
    fullscreen: "全屏", close: "关闭", connecting: "连接中", playing: "播放中", reconnecting: "重连中",
    fps: "帧率", bitrate: "码率", latency: "延迟",
    alarms: "报警", all_types: "全部类型", motion: "移动侦测", camera_offline: "摄像机离线",
    camera_motion: "前端移动侦测", tamper: "视频遮挡/破坏", input: "报警输入",
    camera_online: "摄像机上线", linkage: "联动", diagnosis: "视频诊断", diagnosis_cleared: "已恢复", ack: "确认", acked: "已确认",
    play_clip: "回放", auto_switch: "联动时自动切换画面", highlight_only: "仅高亮",
    time: "时间", camera: "摄像机", type: "类型", score: "强度", peak_score: "峰值强度",
    ptz: "云台控制", zoom_in: "放大", zoom_out: "缩小", presets: "预置位", goto: "转到",
    playback_title: "录像回放", date: "日期", speed: "倍速", download: "下载", export_span: "导出为证据", timeline: "时间轴",
    no_recordings: "该时段无录像", gap: "断档", event: "事件", select_camera: "选择摄像机",
    settings_cameras: "摄像机", settings_motion: "移动侦测", settings_recording: "录像策略",
    settings_children: "下级平台", settings_users: "用户",
    discover: "自动搜索", add: "添加", edit: "编辑", remove: "删除", save: "保存", cancel: "取消",
    name: "名称", location: "位置", address: "地址", status: "状态", rtsp_url: "RTSP 地址",
    role: "角色", admin: "管理员", operator: "操作员", viewer: "查看者",
    sensitivity: "灵敏度", zones: "侦测区域", masks: "屏蔽区域", draw_zone: "画侦测区域",
    draw_mask: "画屏蔽区域", clear: "清除", enabled: "启用",
    mode: "模式", mode_off: "关闭", mode_continuous: "连续录像", mode_events: "事件录像",
    mode_both: "连续+事件", token_once: "令牌只显示一次，请复制：", revoke: "吊销",
    confirm_remove: "确定删除？", saved: "已保存", failed: "失败",
    cameras_count: "台", wall_switched: "联动：已切换到预案画面", wall_highlighted: "联动：已高亮预案画面", colon: "：",
    hours: "小时", minutes: "分钟", recorded: "有录像", segments: "段录像", timeline_hint: "点击时间轴播放，滚轮缩放",
    snapshot: "抓拍", drag_node_hint: "拖到视频墙可填充画面，双击打开", cameras_total: "摄像机总数",
    variant_hint: "切换主码流/低码率", preset: "预置位", ptz_stop: "停止",
    ptz_up: "上", ptz_down: "下", ptz_left: "左", ptz_right: "右",
    ptz_up_left: "左上", ptz_up_right: "右上", ptz_down_left: "左下", ptz_down_right: "右下",
    alarm_ack_all: "全部确认", unacked_only: "仅未确认", scope: "管辖范围", edit_saved: "已保存",
    tokens_hint: "下级平台用此令牌接入本平台（gateway.yaml 的 cascade.parent.token）",
    rule: "预案", level: "级别", last_seen: "最后在线", revoked: "已吊销",
    discovering: "正在搜索…", onvif_address: "ONVIF 地址 (主机[:端口])", no_devices: "未发现设备",
    zone_hint: "在快照上单击添加顶点，双击闭合区域", playing_clip: "正在回放",
    forbidden: "权限不足", added: "已添加", add_camera: "添加摄像机", or: "或", zone: "区域",
    discover_hint: "留空则按配置的网段搜索；可填 IP 或网段，如 192.168.1.0/24",
    segment_len: "分段时长(秒)", pre_roll: "预录(秒)", post_roll: "延录(秒)", created: "创建时间",
    confirm_revoke: "确定吊销该下级平台的令牌？", add_child: "添加下级平台", password_min: "密码（至少 8 位）",
    all: "全部", add_user: "添加用户", fps_unit: "帧/秒", unacked: "未确认",
    alarm: "报警", custom: "自定义", recording_paused: "录像暂停", recording_resumed: "录像恢复",
    plan: "预案", launch_plan: "启动预案", choose_plan: "选择预案", no_plans: "无预案",
    confirm_plan: "确定启动预案", plan_launched: "预案已启动", plan_partly: "预案部分失败",
    settings_audit: "操作日志", export_csv: "导出 CSV", retention: "保留", days: "天", detail: "详情",
    search_btn: "查询",
    tour: "轮巡", choose_tour: "选择轮巡", no_tours: "无轮巡", tour_empty: "没有可播放的摄像机",
    tour_start: "开始轮巡", tour_pause: "暂停/继续", tour_prev: "上一页", tour_next: "下一页",
    tour_stop: "停止轮巡", tour_paused: "已暂停", tour_running: "轮巡中", tour_skipped: "已跳过",
    tour_new: "新建轮巡", tour_edit: "编辑轮巡", tour_items: "摄像机和节点（按顺序）", tour_node: "节点",
    tour_item_hint: "输入或选择摄像机/节点", tour_dwell: "每页停留（秒）", tour_shared: "共享（所有人可用，仅管理员）",
    tour_no_name: "请填写轮巡名称", tour_no_cameras: "轮巡至少需要一台摄像机或一个节点",
    tour_unknown_item: "不是设备树上的摄像机或节点", tour_bad_dwell: "停留时间须在 3-3600 秒之间",
    tour_saved: "轮巡已保存", tour_deleted: "轮巡已删除", move_up: "上移", move_down: "下移",
  },
  en: {
    app_title: "Edge video gateway",
    login_title: "Sign in", username: "Username", password: "Password", login: "Sign in", logout: "Sign out",
    login_failed: "Wrong username or password", login_rate: "Too many attempts, try again later",
    nav_live: "Live view", nav_playback: "Playback", nav_settings: "Settings",
    device_tree: "Device tree", search: "Search name or location", online: "Online", offline: "Offline",
    unauthorised: "Unauthorised", error: "Error", unknown: "Unknown",
    level_city: "City", level_county: "County", level_town: "Town", level_village: "Village", level_site: "Site",
    layout: "Layout", split: "split", clear_wall: "Clear", save_layout: "Save layout", layout_saved: "Layout saved",
    drop_here: "Drag a camera here", main_stream: "Main", low_stream: "Low bitrate",
    served_passthrough: "passthrough", served_sub: "sub-stream", served_transcode: "transcode",
    fullscreen: "Full screen", close: "Close", connecting: "Connecting", playing: "Playing", reconnecting: "Reconnecting",
    fps: "fps", bitrate: "bitrate", latency: "latency",
    alarms: "Alarms", all_types: "All types", motion: "Motion", camera_offline: "Camera offline",
    camera_motion: "Camera motion", tamper: "Tamper", input: "Alarm input",
    camera_online: "Camera online", linkage: "Linkage", diagnosis: "Video quality", diagnosis_cleared: "cleared", ack: "Acknowledge", acked: "Acknowledged",
    play_clip: "Play", auto_switch: "Switch the wall on linkage", highlight_only: "Highlight only",
    time: "Time", camera: "Camera", type: "Type", score: "Score", peak_score: "Peak",
    ptz: "PTZ", zoom_in: "Zoom in", zoom_out: "Zoom out", presets: "Presets", goto: "Go",
    playback_title: "Playback", date: "Date", speed: "Speed", download: "Download", export_span: "Export as evidence", timeline: "Timeline",
    no_recordings: "No recordings in this period", gap: "Gap", event: "Event", select_camera: "Select a camera",
    settings_cameras: "Cameras", settings_motion: "Motion detection", settings_recording: "Recording",
    settings_children: "Child platforms", settings_users: "Users",
    discover: "Discover", add: "Add", edit: "Edit", remove: "Remove", save: "Save", cancel: "Cancel",
    name: "Name", location: "Location", address: "Address", status: "Status", rtsp_url: "RTSP URL",
    role: "Role", admin: "Admin", operator: "Operator", viewer: "Viewer",
    sensitivity: "Sensitivity", zones: "Detection zones", masks: "Masks", draw_zone: "Draw zone",
    draw_mask: "Draw mask", clear: "Clear", enabled: "Enabled",
    mode: "Mode", mode_off: "Off", mode_continuous: "Continuous", mode_events: "Events",
    mode_both: "Continuous + events", token_once: "The token is shown once, copy it:", revoke: "Revoke",
    confirm_remove: "Remove it?", saved: "Saved", failed: "Failed",
    cameras_count: "", wall_switched: "Linkage: wall switched to the plan", wall_highlighted: "Linkage: plan's tiles highlighted", colon: ": ",
    hours: "h", minutes: "min", recorded: "Recorded", segments: "segments", timeline_hint: "Click to play, wheel to zoom",
    snapshot: "Snapshot", drag_node_hint: "Drag onto the wall to fill tiles, double-click to open", cameras_total: "cameras",
    variant_hint: "Switch main / low bitrate", preset: "Preset", ptz_stop: "Stop",
    ptz_up: "Up", ptz_down: "Down", ptz_left: "Left", ptz_right: "Right",
    ptz_up_left: "Up left", ptz_up_right: "Up right", ptz_down_left: "Down left", ptz_down_right: "Down right",
    alarm_ack_all: "Acknowledge all", unacked_only: "Unacknowledged only", scope: "Scope", edit_saved: "Saved",
    tokens_hint: "The child joins with this token (cascade.parent.token in its gateway.yaml)",
    rule: "Plan", level: "Level", last_seen: "Last seen", revoked: "Revoked",
    discovering: "Searching…", onvif_address: "ONVIF address (host[:port])", no_devices: "No devices found",
    zone_hint: "Click on the snapshot to add points, double-click to close the zone", playing_clip: "Playing",
    forbidden: "Not allowed", added: "Added", add_camera: "Add a camera", or: "or", zone: "zone",
    discover_hint: "Empty: the configured ranges; or addresses / ranges such as 192.168.1.0/24",
    segment_len: "Segment (s)", pre_roll: "Pre-roll (s)", post_roll: "Post-roll (s)", created: "Created",
    confirm_revoke: "Revoke this child platform's token?", add_child: "Add a child platform", password_min: "Password (8+ characters)",
    all: "All", add_user: "Add a user", fps_unit: "fps", unacked: "Unacknowledged",
    alarm: "Alarm", custom: "Custom", recording_paused: "Recording paused", recording_resumed: "Recording resumed",
    plan: "Plan", launch_plan: "Launch plan", choose_plan: "Choose a plan", no_plans: "No plans",
    confirm_plan: "Launch the plan", plan_launched: "Plan launched", plan_partly: "Plan partly failed",
    settings_audit: "Audit log", export_csv: "Export CSV", retention: "kept", days: "days", detail: "Detail",
    search_btn: "Search",
    tour: "Tour", choose_tour: "Choose a tour", no_tours: "No tours", tour_empty: "no camera to show",
    tour_start: "Start tour", tour_pause: "Pause/resume", tour_prev: "Previous page", tour_next: "Next page",
    tour_stop: "Stop tour", tour_paused: "paused", tour_running: "running", tour_skipped: "skipped",
    tour_new: "New tour", tour_edit: "Edit tour", tour_items: "Cameras and nodes, in order", tour_node: "node",
    tour_item_hint: "Type or pick a camera / node", tour_dwell: "Seconds per page", tour_shared: "Shared with everyone (admins only)",
    tour_no_name: "Enter the tour's name", tour_no_cameras: "A tour needs at least one camera or node",
    tour_unknown_item: "not a camera or node of the device tree", tour_bad_dwell: "Seconds per page must be 3-3600",
    tour_saved: "Tour saved", tour_deleted: "Tour deleted", move_up: "Move up", move_down: "Move down",
  },
};

let lang = localStorage.getItem("gw_lang") || "zh-CN";

export function t(key) {
  return (STRINGS[lang] && STRINGS[lang][key]) || STRINGS["zh-CN"][key] || key;
}

export function getLang() { return lang; }

export function has(key) { return key in STRINGS["zh-CN"]; }

export function setLang(next) {
  lang = STRINGS[next] ? next : "zh-CN";
  localStorage.setItem("gw_lang", lang);
  document.documentElement.lang = lang;
  applyStatic(document);
}

// Elements carry data-i18n="key" (text) or data-i18n-placeholder / data-i18n-title.
export function applyStatic(root) {
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  root.querySelectorAll("[data-i18n-title]").forEach((el) => { el.title = t(el.dataset.i18nTitle); });
}
