from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.skip_guard import (  # noqa: F401 - hooks: in CI a skip is a failure
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from tests.support import GatewayProcess, SimProcess


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator:
    """Start ``gateway sim`` processes; all are stopped after the test."""
    started: list[SimProcess] = []

    def start(*args: str, name: str = "sim") -> SimProcess:
        proc = SimProcess(tmp_path, *args, name=name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:
    """Start ``gateway run`` processes; all are stopped after the test."""
    started: list[GatewayProcess] = []

    def start(
        config: dict | None = None,
        name: str = "gw",
        login_as_admin: bool = True,
        tls: bool = False,
        **env: str,
    ) -> GatewayProcess:
        proc = GatewayProcess(
            tmp_path, config, name=name, login_as_admin=login_as_admin, tls=tls, **env
        )
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()
