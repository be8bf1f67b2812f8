"""The export's pieces without processes: the signing key, the ZIP checks, runs and gaps, space."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Settings
from gateway.export import bundle
from gateway.export.signing import KEY_FILE, SigningKey
from gateway.export.sources import Run, gaps_of, pieces, runs_of


def _export(tmp_path: Path, key: SigningKey) -> Path:
    clip = tmp_path / "a.mp4"
    clip.write_bytes(os.urandom(5000))
    out = tmp_path / "export.zip"
    manifest = {"export_id": "ex-1", "cameras": [{"path": "village-1/cam-01"}]}
    bundle.write_zip(out, manifest, {"clips/village-1/cam-01/001.mp4": clip}, "说明\n", key)
    return out


def test_the_signing_key_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    key = SigningKey(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in json.dumps(key.describe())
    again = SigningKey(path)
    assert again.fingerprint == key.fingerprint and len(key.fingerprint) == 39
    os.chmod(path, 0o644)  # someone loosened it: it is tightened on the next start
    SigningKey(path)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_good_export_verifies_and_each_kind_of_tampering_is_named(tmp_path: Path) -> None:
    key = SigningKey(tmp_path / KEY_FILE)
    good = _export(tmp_path, key)
    verdict = bundle.verify_zip(good, key.fingerprint)
    assert verdict.ok, verdict.problems
    assert verdict.checked == 2  # the clip and the readme

    def variant(name: str, change) -> Path:
        out = tmp_path / name
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = change(info.filename, src.read(info.filename))
                if data is not None:
                    dst.writestr(info, data)
        return out

    added = variant("added.zip", lambda n, d: d)
    with zipfile.ZipFile(added, "a") as zf:
        zf.writestr("clips/extra.mp4", b"not in the manifest")
    assert bundle.verify_zip(added).problems == [
        "clips/extra.mp4: in the ZIP but not in the manifest"
    ]
    missing = variant("missing.zip", lambda n, d: None if n.endswith(".mp4") else d)
    assert bundle.verify_zip(missing).problems == [
        "clips/village-1/cam-01/001.mp4: missing from the ZIP"
    ]
    readme = variant("readme.zip", lambda n, d: d + b"x" if n == bundle.README else d)
    assert bundle.verify_zip(readme).problems == [
        f"{bundle.README}: SHA-256 does not match (content changed)"
    ]
    # A forger re-signs with a key of their own: self-consistent, but not the gateway's key.
    other = SigningKey(tmp_path / "other.pem")
    forged = tmp_path / "forged.zip"
    manifest = {"export_id": "ex-1", "cameras": []}
    clip = tmp_path / "b.mp4"
    clip.write_bytes(b"fake footage")
    bundle.write_zip(forged, manifest, {"clips/x.mp4": clip}, "说明\n", other)
    assert bundle.verify_zip(forged).ok
    problems = bundle.verify_zip(forged, key.fingerprint).problems
    assert problems == [f"signed by key {other.fingerprint}, not the expected {key.fingerprint}"]
    # A swapped public key no longer matches the signature nor the signed fingerprint.
    swapped = variant(
        "swapped.zip",
        lambda n, d: other.public_pem.encode() if n == bundle.PUBLIC_KEY else d,
    )
    problems = bundle.verify_zip(swapped).problems
    assert "manifest.json: signature does not match (manifest changed)" in problems
    assert "public_key.pem: not the key named in the manifest" in problems
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"hello")
    assert "not a readable ZIP" in bundle.verify_zip(not_zip).problems[0]


def test_segments_become_runs_and_gaps_within_the_span() -> None:
    segs = [(100.0, 102.0, 10), (102.05, 104.0, 10), (110.0, 112.0, 10), (90.0, 95.0, 10)]
    runs = runs_of(segs, 96.0, 111.0)
    assert [(r.start, r.end) for r in runs] == [(100.0, 104.0), (110.0, 111.0)]
    assert gaps_of(runs, 96.0, 111.0) == [(96.0, 100.0), (104.0, 110.0)]
    assert gaps_of([], 0.0, 10.0) == [(0.0, 10.0)]
    parts = pieces(Run(0.0, 9000.0, 9000))
    assert [(p.start, p.end) for p in parts] == [(0.0, 3600.0), (3600.0, 7200.0), (7200.0, 9000.0)]
    assert sum(p.bytes for p in parts) == 9000


def test_export_space_is_bounded_by_its_setting(tmp_path: Path) -> None:
    from gateway.export.service import Exporter

    settings = Settings.model_validate(
        {"data_dir": str(tmp_path / "data"), "export": {"max_mb": 1}}
    )
    gw = Gateway(settings)
    try:
        exporter: Exporter = gw.export
        assert exporter.usage() == {"used_bytes": 0, "max_bytes": 1_000_000}
        assert exporter.room_for(500_000) is None
        (exporter.dir / "ex-old.zip").write_bytes(b"\0" * 700_000)
        assert exporter.used_bytes() == 700_000
        why = exporter.room_for(500_000)
        assert why is not None and "export.max_mb" in why and "导出空间已满" in why
    finally:
        gw.db.close()


@pytest.mark.parametrize("hours", [24 * 30, 24.01])
def test_a_span_over_the_limit_is_refused_before_anything_is_made(
    tmp_path: Path, hours: float
) -> None:
    from gateway.auth.model import Caller
    from gateway.export.service import ExportRefused

    gw = Gateway(Settings.model_validate({"data_dir": str(tmp_path / "data")}))
    try:
        with pytest.raises(ExportRefused) as err:
            gw.export.check(Caller("op", "operator"), ["cam-01"], 0.0, hours * 3600)
        assert err.value.status == 400 and "max_span_hours" in str(err.value)
        assert gw.export.list() == []
    finally:
        gw.db.close()
