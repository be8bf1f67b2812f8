"""The export ZIP: clips, ``manifest.json`` (signed), ``manifest.sig``, the public key and 说明.txt.

Layout::

    manifest.json      what was exported, by whom, when; SHA-256 and size of every file
    manifest.sig       Ed25519 signature (base64) of manifest.json's exact bytes
    public_key.pem     the gateway's public key; its fingerprint is in the signed manifest
    说明.txt           a readme for whoever receives the export (zh-CN, then English)
    clips/…/*.mp4      one MP4 per continuous recorded run (remuxed, not transcoded)

:func:`verify_zip` checks all of it and names every problem it finds.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.export import signing

FORMAT = "gateway-evidence-export/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public_key.pem"
README = "说明.txt"
CHUNK = 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_zip(
    out: Path,
    manifest: dict[str, Any],
    files: dict[str, Path],
    readme: str,
    key: signing.SigningKey,
    progress: Callable[[float], None] | None = None,
) -> None:
    """Hash ``files`` (name in the ZIP → file), sign the manifest and write the ZIP (blocking).

    MP4 does not compress: entries are stored, which also keeps a byte in the ZIP one
    byte of the clip (what a forensic examiner expects when they extract it).
    """
    readme_bytes = readme.encode("utf-8")
    entries = []
    for i, (name, path) in enumerate(files.items()):
        entries.append({"name": name, "bytes": path.stat().st_size, "sha256": sha256_file(path)})
        if progress is not None:
            progress((i + 1) / (len(files) + 1))
    entries.append(
        {
            "name": README,
            "bytes": len(readme_bytes),
            "sha256": hashlib.sha256(readme_bytes).hexdigest(),
        }
    )
    manifest = {
        **manifest,
        "format": FORMAT,
        "files": entries,
        "signature": {"algorithm": "Ed25519", "public_key_fingerprint": key.fingerprint},
    }
    body = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    tmp = out.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, body)
        zf.writestr(SIGNATURE, key.sign(body) + "\n")
        zf.writestr(PUBLIC_KEY, key.public_pem)
        zf.writestr(README, readme_bytes)
        for name, path in files.items():
            zf.write(path, name)
    tmp.replace(out)


@dataclass
class Verdict:
    """What :func:`verify_zip` found: ``problems`` is empty when everything checks out."""

    problems: list[str] = field(default_factory=list)
    checked: int = 0
    fingerprint: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _hash_member(zf: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with zf.open(name) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def verify_zip(path: Path, expected_fingerprint: str | None = None) -> Verdict:
    """Check the signature, the key's fingerprint and every file's size and SHA-256."""
    verdict = Verdict()
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        verdict.problems.append(f"{path}: not a readable ZIP ({err})")
        return verdict
    with zf:
        names = set(zf.namelist())
        missing = [n for n in (MANIFEST, SIGNATURE, PUBLIC_KEY) if n not in names]
        if missing:
            verdict.problems.append(f"missing from the ZIP: {', '.join(missing)}")
            return verdict
        try:
            body = zf.read(MANIFEST)
            sig = zf.read(SIGNATURE).decode("ascii").strip()
            pem = zf.read(PUBLIC_KEY).decode("ascii")
        except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as err:
            verdict.problems.append(f"manifest, signature or key unreadable: {err}")
            return verdict
        try:
            verdict.fingerprint = signing.fingerprint(pem)
        except ValueError:
            verdict.problems.append(f"{PUBLIC_KEY}: not a public key")
            return verdict
        if not signing.check(pem, body, sig):
            verdict.problems.append(f"{MANIFEST}: signature does not match (manifest changed)")
        try:
            manifest = json.loads(body)
        except ValueError:
            verdict.problems.append(f"{MANIFEST}: not JSON")
            return verdict
        verdict.manifest = manifest
        signed_fp = manifest.get("signature", {}).get("public_key_fingerprint")
        if signed_fp != verdict.fingerprint:
            verdict.problems.append(f"{PUBLIC_KEY}: not the key named in the manifest")
        if expected_fingerprint and _norm(expected_fingerprint) != _norm(verdict.fingerprint):
            verdict.problems.append(
                f"signed by key {verdict.fingerprint}, not the expected {expected_fingerprint}"
            )
        listed = set()
        for entry in manifest.get("files", []):
            name = str(entry.get("name", ""))
            listed.add(name)
            if name not in names:
                verdict.problems.append(f"{name}: missing from the ZIP")
                continue
            try:
                digest, size = _hash_member(zf, name)
            except (zipfile.BadZipFile, OSError) as err:
                verdict.problems.append(f"{name}: content changed ({err})")
                continue
            verdict.checked += 1
            if digest != entry.get("sha256"):
                verdict.problems.append(f"{name}: SHA-256 does not match (content changed)")
            elif size != entry.get("bytes"):
                verdict.problems.append(f"{name}: size does not match")
        extra = names - listed - {MANIFEST, SIGNATURE, PUBLIC_KEY}
        for name in sorted(extra):
            verdict.problems.append(f"{name}: in the ZIP but not in the manifest")
    return verdict


def _norm(fp: str) -> str:
    return fp.replace(":", "").strip().lower()
