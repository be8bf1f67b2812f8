"""In CI (``CI=true``) a skipped test fails unless it is on the allow-list; elsewhere it skips.

A real pytest run in a subprocess over a small suite that skips in every way a test can:
a marker, a call in the test, a fixture, and a module that cannot be imported.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import ROOT

CONFTEST = """
        import pytest
        from tests import skip_guard
        from tests.skip_guard import pytest_make_collect_report, pytest_runtest_makereport
        skip_guard.ALLOWED_SKIPS["test_skips.py::test_on_the_list"] = "a documented hole"

        @pytest.fixture
        def tool():
            pytest.skip("the tool is not installed")
"""
SUITE = {
    "test_skips.py": """
        import pytest

        @pytest.mark.skipif(True, reason="no node")
        def test_marker(): pass

        def test_call(): pytest.skip("no namespace here")

        def test_fixture(tool): pass

        def test_on_the_list(): pytest.skip("allowed")

        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_expected_failure(): assert False

        def test_runs(): pass
    """,
}
MODULE_SKIP = {
    "test_module_skip.py": """
        import pytest
        pytest.importorskip("a_module_nobody_installed")
        def test_never(): pass
    """,
}


def run_suite(
    tmp_path: Path, ci: str | None, files: dict[str, str] = SUITE
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
         "-rA", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_in_ci_every_skip_not_on_the_list_is_a_failure(tmp_path: Path) -> None:
    out = run_suite(tmp_path, "true")
    assert out.returncode == 1, out.stdout[-4000:]
    # A skip in setup (marker, fixture) reports as an error, in the test as a failure.
    for name in ("test_marker", "test_call", "test_fixture"):
        assert re.search(rf"(FAILED|ERROR) test_skips.py::{name} ", out.stdout), out.stdout[-4000:]
    assert "skipped in CI, which counts as a failure: Skipped: no namespace here" in out.stdout
    assert "SKIPPED [1] test_skips.py" in out.stdout  # the listed one only
    assert "PASSED test_skips.py::test_runs" in out.stdout
    assert "XFAIL test_skips.py::test_expected_failure" in out.stdout
    assert re.search(r"\b1 failed, 1 passed, 1 skipped, 1 xfailed, 2 errors\b", out.stdout), (
        out.stdout[-600:]
    )


def test_in_ci_a_module_that_skips_at_import_is_an_error(tmp_path: Path) -> None:
    out = run_suite(tmp_path, "true", MODULE_SKIP)
    assert out.returncode != 0, out.stdout[-4000:]
    assert "ERROR test_module_skip.py - skipped in CI, which counts as a failure" in out.stdout


def test_outside_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    out = run_suite(tmp_path, None)
    assert out.returncode == 0, out.stdout[-4000:]
    assert re.search(r"\b1 passed, 4 skipped, 1 xfailed\b", out.stdout), out.stdout[-600:]
    assert run_suite(tmp_path, None, MODULE_SKIP).returncode == 0
