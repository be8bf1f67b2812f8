"""说明.txt: what an export holds and how to check it, for whoever receives it (zh-CN, English)."""

from __future__ import annotations

import time
from typing import Any


def _local(iso: str) -> str:
    from datetime import datetime

    ts = datetime.fromisoformat(iso).timestamp()
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts))


def readme(job: dict[str, Any], fingerprint: str) -> str:
    """The readme of one export."""
    lines = [
        "录像导出说明",
        "============",
        f"导出编号：{job['id']}",
        f"事由：{job.get('title') or '（未填写）'}",
        f"导出网关：{job['gateway']['name']}（{job['gateway']['path'] or job['gateway']['id']}）",
        f"导出人：{job['user']}",
        f"导出时间：{_local(job['exported_at'])}",
        f"时段：{_local(job['start'])} 至 {_local(job['end'])}",
        "",
        "摄像机：",
    ]
    for cam in job["cameras"]:
        lines.append(
            f"  - {cam.get('place', '')} · {cam['name'] or cam['path']}（{cam['path']}）："
            f"录像 {cam['recorded_seconds']:.0f} 秒 / 请求 {cam['requested_seconds']:.0f} 秒，"
            f"断档 {len(cam['gaps'])} 处，状态：{_STATE_ZH.get(cam['state'], cam['state'])}"
            + (f"（{cam['reason']}）" if cam.get("reason") else "")
        )
    lines += [
        "",
        "文件：clips/ 下每个 MP4 是一段连续录像，由原始录像直接封装（未重新编码），",
        "从请求起点之前最近的关键帧开始。manifest.json 列出每个文件的 SHA-256、",
        "时段、断档和导出人；manifest.sig 是网关私钥对 manifest.json 的 Ed25519 签名，",
        "public_key.pem 是网关公钥。",
        "",
        "校验方法：gateway export verify 本文件.zip --key 公钥指纹",
        f"本网关公钥指纹：{fingerprint}",
        "请与网关设置页面或 /api/v1/exports/key 显示的指纹核对；任何字节被改动，校验都会失败。",
        "",
        "Evidence export",
        "===============",
        f"Export {job['id']} by {job['user']} at {job['exported_at']} (UTC), "
        f"gateway {job['gateway']['path'] or job['gateway']['id']}.",
        f"Span: {job['start']} to {job['end']} (UTC). Reason: {job.get('title') or '-'}",
        "",
    ]
    for cam in job["cameras"]:
        lines.append(
            f"  - {cam['path']} ({cam['name']}): recorded {cam['recorded_seconds']:.0f} s of "
            f"{cam['requested_seconds']:.0f} s requested, {len(cam['gaps'])} gap(s), {cam['state']}"
            + (f" ({cam['reason']})" if cam.get("reason") else "")
        )
    lines += [
        "",
        "Each MP4 under clips/ is one continuous recorded run, remuxed from the recording",
        "(not re-encoded), starting at the keyframe at or before the requested start.",
        "manifest.json lists every file's SHA-256; manifest.sig is the gateway's Ed25519",
        "signature of manifest.json; public_key.pem is the gateway's public key.",
        f"Check it with: gateway export verify FILE.zip --key {fingerprint}",
        "Compare the fingerprint with the one the gateway shows (/api/v1/exports/key).",
        "",
    ]
    return "\n".join(lines)


_STATE_ZH = {"done": "完成", "empty": "无录像", "failed": "失败"}
