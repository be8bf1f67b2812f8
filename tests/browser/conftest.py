"""Fixtures shared by the browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.ui_system import UiSystem, start_ui_system, stop_ui_system


@pytest.fixture(scope="package")
def ui_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiSystem]:
    """One city ← town ← village system shared by the operator UI tests (test_ui_*)."""
    system = start_ui_system(tmp_path_factory.mktemp("ui"))
    try:
        yield system
    finally:
        stop_ui_system(system)
