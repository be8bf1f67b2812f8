"""Evidence export (录像导出) through the API and the CLI, with real gateways and recordings.

One system for the module: town-a (its own camera, short retention) with village-1 and
village-2 below it, all recording a simulated camera. Each test leaves it as it found it.
The last test drives the export page in Debian's Chromium (screenshots in test-artifacts/ui).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.ui_system import new_page, shot, ui_login
from tests.cascade_support import wait_for
from tests.export_support import (
    System,
    closed_segments,
    flip_byte_in_member,
    iso,
    rewrite_member,
    run_export,
    start_system,
    tree_has,
    verify_cli,
    zip_members,
)
from tests.support import login

pytestmark = pytest.mark.slow
VILLAGE_CAMS = ["village-1/cam-01", "village-2/cam-01"]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    yield from start_system(tmp_path_factory.mktemp("export"), "127.0.81.1")


def _recent_span(system: System, seconds: float = 4.0) -> tuple[float, float]:
    """A span that both villages have recorded (their latest closed segments)."""

    def ends() -> list[float]:
        out = []
        for path in VILLAGE_CAMS:
            segs = closed_segments(system.town, path)
            out.append(max(_ts(s["end"]) for s in segs) if segs else 0.0)
        return out

    def first(path: str) -> float:
        return min(_ts(s["start"]) for s in closed_segments(system.town, path))

    first_both = max(first(p) for p in VILLAGE_CAMS)  # the later of the two to start
    wait_for(
        lambda: min(ends()) - first_both >= seconds, 30, f"{seconds} s recorded in both villages"
    )
    end = min(ends())
    return end - seconds, end


def _ts(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def test_an_export_across_two_villages_downloads_signed_and_verifies(system, tmp_path):
    t0, t1 = _recent_span(system)
    body = {"cameras": VILLAGE_CAMS, "start": iso(t0), "end": iso(t1), "title": "案件 2026-117"}
    job = run_export(system.town, body)
    assert job["state"] == "done", job
    assert job["progress"] == 1.0
    print(
        f"export of {len(VILLAGE_CAMS)} village cameras x {t1 - t0:.1f} s at the town:"
        f" {job['finished'] - job['created']:.2f} s from request to ZIP, {job['bytes']} bytes"
    )
    by_path = {c["path"]: c for c in job["cameras"]}
    assert set(by_path) == set(VILLAGE_CAMS)
    for cam in by_path.values():
        assert cam["state"] == "done" and cam["files"], cam
        assert cam["place"] in ("东村", "西村") and cam["name"] == "村口"
        assert 3.0 <= cam["recorded_seconds"] <= cam["requested_seconds"] + 0.01, job

    r = system.town.client.get(job["download"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert hashlib.sha256(r.content).hexdigest() == job["sha256"]
    members = zip_members(r.content)
    manifest = json.loads(members["manifest.json"])
    assert manifest["exported_by"]["user"] == "admin"
    assert manifest["title"] == "案件 2026-117"
    assert manifest["requested"] == {"start": job["start"], "end": job["end"]}
    assert {c["path"] for c in manifest["cameras"]} == set(VILLAGE_CAMS)
    # Every file listed, every SHA-256 as recomputed here, and the clips are real MP4s.
    clips = [f for f in manifest["files"] if f["name"].endswith(".mp4")]
    assert {f["name"].split("/")[1] for f in clips} == {"village-1", "village-2"}
    for entry in manifest["files"]:
        data = members[entry["name"]]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["name"]
        assert len(data) == entry["bytes"]
    for entry in clips:
        assert members[entry["name"]][4:8] == b"ftyp"
    assert "录像导出说明" in members["说明.txt"].decode("utf-8")
    # The public key in the ZIP is the one the API shows.
    key = system.town.client.get("/api/v1/exports/key").json()
    assert members["public_key.pem"].decode() == key["public_key_pem"]
    assert manifest["signature"]["public_key_fingerprint"] == key["fingerprint"]

    good = tmp_path / "export.zip"
    good.write_bytes(r.content)
    ok = verify_cli(good, "--key", key["fingerprint"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout and f"{len(manifest['files'])} files" in ok.stdout

    # One byte changed in a clip, CRCs fixed up (a careful forger): the SHA-256 catches it.
    victim = clips[0]["name"]
    forged = tmp_path / "forged.zip"
    forged.write_bytes(r.content)
    rewrite_member(forged, victim, lambda d: d[:1000] + bytes([d[1000] ^ 1]) + d[1001:])
    bad = verify_cli(forged)
    assert bad.returncode != 0
    assert f"{victim}: SHA-256 does not match" in bad.stderr, bad.stderr
    # One byte changed in place (a careless edit): the file is named too.
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(r.content)
    flip_byte_in_member(flipped, victim, 2000)
    bad = verify_cli(flipped)
    assert bad.returncode != 0 and victim in bad.stderr, bad.stderr
    # The manifest changed (a time moved): the signature fails.
    forged_manifest = tmp_path / "manifest.zip"
    forged_manifest.write_bytes(r.content)
    rewrite_member(forged_manifest, "manifest.json", lambda d: d.replace(b'"admin"', b'"admim"', 1))
    bad = verify_cli(forged_manifest)
    assert bad.returncode != 0 and "manifest.json: signature does not match" in bad.stderr
    # Another gateway's key named on the command line: refused.
    other = verify_cli(good, "--key", "0000:0000:0000:0000:0000:0000:0000:0000")
    assert other.returncode != 0 and "not the expected" in other.stderr

    # The export is audited: who, cameras, span; and its download.
    entries = system.town.client.get("/api/v1/audit", params={"action": "export"}).json()
    ops = [(e["detail"].get("op"), e["detail"].get("export")) for e in entries["entries"]]
    assert ("create", job["id"]) in ops and ("download", job["id"]) in ops
    created = next(e for e in entries["entries"] if e["detail"].get("export") == job["id"])
    assert created["user"] == "admin"

    # The exported span is locked where it is recorded (the villages) until the export goes.
    def locked_at(village: str) -> list[bool]:
        gw = system.villages[village]
        r = gw.client.get(
            "/api/v1/recordings", params={"camera": "cam-01", "start": iso(t0), "end": iso(t1)}
        )
        return [s["locked"] for s in r.json()["segments"] if not s["recording"]]

    assert all(c["locked"] for c in manifest["cameras"])
    for village in system.villages:
        assert locked_at(village) and all(locked_at(village)), village
    assert system.town.client.delete(f"/api/v1/exports/{job['id']}").status_code == 204
    assert system.town.client.get(f"/api/v1/exports/{job['id']}").status_code == 404
    for village in system.villages:
        assert not any(locked_at(village)), village


def test_bad_export_requests_get_clear_errors_and_create_nothing(system):
    town = system.town
    before = len(town.client.get("/api/v1/exports").json()["exports"])
    now = time.time()

    def post(body: dict, client: httpx.Client | None = None) -> httpx.Response:
        return (client or town.client).post("/api/v1/exports", json=body)

    r = post({"cameras": VILLAGE_CAMS, "start": iso(now - 30 * 86400), "end": iso(now)})
    assert r.status_code == 400 and "export.max_span_hours" in r.json()["detail"]
    assert "导出时段过长" in r.json()["detail"]
    r = post({"cameras": ["village-3/cam-09"], "start": iso(now - 60), "end": iso(now)})
    assert r.status_code == 404 and "未知摄像机" in r.json()["detail"]
    r = post({"cameras": [], "start": iso(now - 60), "end": iso(now)})
    assert r.status_code == 422
    r = post({"cameras": ["cam-01"], "start": iso(now), "end": iso(now - 60)})
    assert r.status_code == 400 and "结束时间须晚于开始时间" in r.json()["detail"]
    r = post({"cameras": ["cam-01"], "start": "yesterday", "end": iso(now)})
    assert r.status_code == 400

    # An operator of village-1 cannot export village-2's camera.
    made = town.client.post(
        "/api/v1/auth/users",
        json={
            "username": "dongcun",
            "password": "dongcun-pass-1",
            "role": "operator",
            "scope": "village-1",
        },
    )
    assert made.status_code in (200, 201), made.text
    token = login(town.base_url, "dongcun", "dongcun-pass-1")
    with httpx.Client(
        base_url=town.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as op:
        r = post({"cameras": VILLAGE_CAMS, "start": iso(now - 60), "end": iso(now)}, op)
        assert r.status_code == 403 and "不在您的管辖范围内" in r.json()["detail"]
        assert "village-2/cam-01" in r.json()["detail"]
        # And sees none of the admin's exports.
        assert all(j["user"] == "dongcun" for j in op.get("/api/v1/exports").json()["exports"])
    assert len(town.client.get("/api/v1/exports").json()["exports"]) == before
    refused = town.client.get("/api/v1/audit", params={"action": "export"}).json()["entries"]
    assert any(not e["ok"] and e["user"] == "dongcun" for e in refused)


def test_a_span_with_no_recordings_is_a_clear_result_not_an_empty_zip(system):
    # Two hours ago, long before this system started: nothing recorded anywhere.
    now = time.time()
    body = {"cameras": ["cam-01", *VILLAGE_CAMS], "start": iso(now - 7200), "end": iso(now - 7000)}
    job = run_export(system.town, body)
    assert job["state"] == "empty", job
    assert "该时段无录像" in job["error"]
    assert all(c["state"] == "empty" and not c["files"] for c in job["cameras"])
    assert job["download"] is None
    r = system.town.client.get(f"/api/v1/exports/{job['id']}/download")
    assert r.status_code == 409 and "该时段无录像" in r.json()["detail"]
    system.town.client.delete(f"/api/v1/exports/{job['id']}")


def test_a_child_offline_fails_its_camera_with_the_reason_and_the_others_finish(system):
    t0, t1 = _recent_span(system, 4.0)
    village2 = system.villages["village-2"]
    r = village2.client.post("/api/v1/cascade/uplink", json={"enabled": False})
    assert r.status_code == 200, r.text
    try:
        wait_for(
            lambda: tree_has(system.town, "village-2/cam-01", "offline"),
            30,
            "village-2 offline at the town",
        )
        body = {"cameras": VILLAGE_CAMS, "start": iso(t0), "end": iso(t1)}
        job = run_export(system.town, body)
    finally:
        village2.client.post("/api/v1/cascade/uplink", json={"enabled": True})
    assert job["state"] == "partial", job
    cams = {c["path"]: c for c in job["cameras"]}
    assert cams["village-1/cam-01"]["state"] == "done" and cams["village-1/cam-01"]["files"]
    assert cams["village-2/cam-01"]["state"] == "failed"
    assert "offline" in cams["village-2/cam-01"]["reason"]
    r = system.town.client.get(job["download"])
    assert r.status_code == 200
    manifest = json.loads(zip_members(r.content)["manifest.json"])
    failed = next(c for c in manifest["cameras"] if c["path"] == "village-2/cam-01")
    assert failed["state"] == "failed" and "offline" in failed["reason"]
    system.town.client.delete(f"/api/v1/exports/{job['id']}")
    wait_for(lambda: tree_has(system.town, "village-2/cam-01"), 30, "village-2 back online")


def test_retention_keeps_an_exported_span_until_the_export_is_deleted(system):
    town = system.town

    # The town keeps continuous footage ~9 s (retention.continuous_days = 0.0001).
    def whole() -> list[dict]:  # a full-length segment (not one cut short by a reconnect)
        return [s for s in closed_segments(town, "cam-01") if s["duration"] >= 1.5]

    seg = wait_for(whole, 30, "a closed town segment")[-1]
    s0, s1 = _ts(seg["start"]), _ts(seg["end"])
    job = run_export(town, {"cameras": ["cam-01"], "start": iso(s0 + 0.2), "end": iso(s1 - 0.2)})
    assert job["state"] == "done", job

    def ids() -> set[int]:
        return {s["id"] for s in closed_segments(town, "cam-01")}

    # Wait until footage recorded after the locked segment has aged out and gone...
    def after() -> set[int]:
        return {s["id"] for s in closed_segments(town, "cam-01") if _ts(s["start"]) >= s1 - 0.5}

    later = wait_for(after, 30, "a segment recorded after the exported one")
    wait_for(lambda: not (later & ids()), 60, "younger unlocked segments evicted by age")
    # ...while the exported one, older than them, is still there and marked locked.
    kept = [s for s in closed_segments(town, "cam-01") if s["id"] == seg["id"]]
    assert kept and kept[0]["locked"], kept
    assert time.time() - s1 > 8.64
    # Deleting the export releases it; the next retention pass removes it.
    assert town.client.delete(f"/api/v1/exports/{job['id']}").status_code == 204
    wait_for(lambda: seg["id"] not in ids(), 30, "the released segment evicted")


def test_export_space_and_key_are_shown(system):
    out = system.town.client.get("/api/v1/exports").json()
    assert out["space"]["max_bytes"] == 4096 * 1_000_000
    assert out["limits"]["max_span_hours"] == 24
    assert out["key"]["algorithm"] == "Ed25519"
    key_file = Path(system.town.data_dir) / "export-signing-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in json.dumps(out)
    health = system.town.client.get("/api/v1/health").json()
    assert "export_bytes" in health["disk"]


# -- the export page in Chromium (Debian's, through Playwright) ------------------------------


def _set_span(page: Any, start: float, end: float) -> None:
    """Fill the page's datetime-local inputs (the browser's local time) from epoch seconds."""
    page.evaluate(
        """([a, b]) => {
          const p = (n) => String(n).padStart(2, "0");
          const f = (ms) => {
            const d = new Date(ms);
            return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`
              + `T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
          };
          document.getElementById("export-start").value = f(a);
          document.getElementById("export-end").value = f(b);
        }""",
        [start * 1000, end * 1000],
    )


def _open_page(browser: Any, base_url: str, lang: str, query: str = "") -> Any:
    page = new_page(browser, lang)
    ui_login(page, base_url)
    page.goto(base_url + "/export.html" + query)
    page.wait_for_selector("body[data-ready] #export-cams label", timeout=15_000)
    return page


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_the_export_page_exports_two_villages_with_progress_and_a_verifiable_download(
    system: System, tmp_path: Path
) -> None:
    pytest.importorskip("playwright.sync_api")
    from tests.browser.ui_system import chromium

    town = system.town
    t0, t1 = _recent_span(system)
    before = {j["id"] for j in town.client.get("/api/v1/exports").json()["exports"]}
    fingerprint = town.client.get("/api/v1/exports/key").json()["fingerprint"]
    errors: list[str] = []
    with chromium() as browser:
        page = _open_page(browser, town.base_url, "zh-CN")
        page.on("pageerror", lambda e: errors.append(str(e)))
        assert page.inner_text("h1") == "录像导出"
        assert page.inner_text("#export-key") == fingerprint
        # Same camera name in two villages: the list says which village.
        labels = {p: page.inner_text(f'#export-cams label[data-path="{p}"]') for p in VILLAGE_CAMS}
        assert "东村 · 村口" in labels["village-1/cam-01"]
        assert "西村 · 村口" in labels["village-2/cam-01"]
        for path in VILLAGE_CAMS:
            page.check(f'#export-cams label[data-path="{path}"] input')

        # Bad input: a 30-day span is refused with a clear message; nothing is created.
        _set_span(page, t1 - 30 * 86400, t1)
        page.click("#export-submit")
        wait_for(lambda: "导出时段过长" in page.inner_text("#export-error"), 10, "the span error")
        shot(page, "40-export-error-zh")
        assert {j["id"] for j in town.client.get("/api/v1/exports").json()["exports"]} == before

        _set_span(page, t0, t1)
        page.fill("#export-title", "派出所调取 2026-117")
        page.click("#export-submit")
        row = page.locator("#export-jobs tr[data-id]").first
        wait_for(
            lambda: row.get_attribute("data-state") == "done", 60, "the export done", every=0.3
        )
        assert "100%" in row.inner_text() and "完成" in row.locator(".export-state").inner_text()
        for path, place in zip(VILLAGE_CAMS, ("东村", "西村"), strict=True):
            cam = row.locator(f'.cam-result[data-path="{path}"]')
            assert cam.get_attribute("data-state") == "done"
            assert f"{place} · 村口" in cam.inner_text()
        shot(page, "41-export-done-zh")

        with page.expect_download(timeout=30_000) as info:
            row.locator("a.export-download").click()
        saved = tmp_path / "export.zip"
        info.value.save_as(saved)
        export_id = row.get_attribute("data-id")
        job = town.client.get(f"/api/v1/exports/{export_id}").json()
        data = saved.read_bytes()
        assert hashlib.sha256(data).hexdigest() == job["sha256"]
        members = zip_members(data)
        manifest = json.loads(members["manifest.json"])
        assert manifest["title"] == "派出所调取 2026-117"
        for entry in manifest["files"]:
            assert hashlib.sha256(members[entry["name"]]).hexdigest() == entry["sha256"]
        clips = [f["name"] for f in manifest["files"] if f["name"].endswith(".mp4")]
        assert {name.split("/")[1] for name in clips} == {"village-1", "village-2"}
        ok = verify_cli(saved, "--key", fingerprint)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        flip_byte_in_member(saved, clips[-1], 1500)
        bad = verify_cli(saved, "--key", fingerprint)
        assert bad.returncode != 0 and clips[-1] in bad.stderr, bad.stderr

        # The same page in English, opened with a camera preselected (as a link from playback).
        en = _open_page(browser, town.base_url, "en", f"?camera={VILLAGE_CAMS[0]}")
        en.on("pageerror", lambda e: errors.append(str(e)))
        assert en.inner_text("h1") == "Evidence export"
        en_row = en.locator(f'#export-jobs tr[data-id="{export_id}"]')
        assert "done" in en_row.locator(".export-state").inner_text()
        shot(en, "42-export-done-en")
        _set_span(en, t1 - 30 * 86400, t1)
        assert en.is_checked(f'#export-cams label[data-path="{VILLAGE_CAMS[0]}"] input')
        assert not en.is_checked(f'#export-cams label[data-path="{VILLAGE_CAMS[1]}"] input')
        en.click("#export-submit")
        wait_for(lambda: "max_span_hours" in en.inner_text("#export-error"), 10, "the span error")
        shot(en, "43-export-error-en")

        # Deleting it from the page removes it.
        page.on("dialog", lambda d: d.accept())
        row.locator("button.export-delete").click()
        wait_for(lambda: page.locator(f'tr[data-id="{export_id}"]').count() == 0, 10, "deleted")
        assert town.client.get(f"/api/v1/exports/{export_id}").status_code == 404
        page.context.close()
        en.context.close()
    assert not errors, errors
