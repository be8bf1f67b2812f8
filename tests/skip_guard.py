"""In CI a skipped test is a failed test, unless it is on :data:`ALLOWED_SKIPS`.

A skip hides a failure: a test that skips because a tool is missing, a namespace could
not be made or a part "is not there yet" proves nothing, and the suite stays green.
With ``CI=true`` (``.ci/run`` sets it) every skip, at collection or at run time, is
reported as a failure with its reason; on a developer's machine a skip stays a skip.
``scripts/setup --system`` installs everything the suite needs, so the list is empty.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

# Node id -> why this skip is acceptable in CI. Keep it short; every entry is a hole.
ALLOWED_SKIPS: dict[str, str] = {}


def strict() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _reason(longrepr: Any) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail(report: pytest.CollectReport | pytest.TestReport) -> None:
    reason = _reason(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI, which counts as a failure: {reason}\n"
        "Install what the test needs (scripts/setup --system) or, if the skip is right"
        " here, add the test to ALLOWED_SKIPS in tests/skip_guard.py with the reason."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and strict()
        and item.nodeid not in ALLOWED_SKIPS
    ):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and strict() and report.nodeid not in ALLOWED_SKIPS:
        _fail(report)
