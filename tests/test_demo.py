"""The README's first command: the three-level demo comes up and the city sees every camera."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, free_port_block

# gateway demo binds --port and the three after it (city, town, two villages).
DEMO_PORTS = 4


def test_demo_starts_three_levels_and_city_sees_all_cameras(tmp_path: Path) -> None:
    port = free_port_block(DEMO_PORTS)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--check",
            "--port",
            str(port),
            "--dir",
            str(tmp_path / "demo"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "city sees 7/7 cameras online" in out.stdout
    assert f"http://127.0.0.1:{port}/" in out.stdout
    # Four gateways and three simulators wrote logs; none of them crashed with a traceback.
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "demo").glob("*.log")}
    assert {"city.log", "town-a.log", "village-1.log", "village-2.log"} <= set(logs)
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"
