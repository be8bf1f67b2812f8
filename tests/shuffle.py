"""Runs the suite in a shuffled order when ``TEST_SHUFFLE`` names a seed.

Every test must set up what it asserts on, whatever ran before it; a shuffled order
proves it. Modules are shuffled, then the tests within each module (so module-scoped
fixtures are still set up once per module). The seed is printed in the header, so a
failing order can be replayed: ``TEST_SHUFFLE=<seed> scripts/test``. ``TEST_SHUFFLE=random``
picks a fresh seed. Loaded by ``-p tests.shuffle`` (pyproject's addopts); no dependency.
"""

from __future__ import annotations

import os
import random

import pytest


def _seed() -> int | None:
    value = os.environ.get("TEST_SHUFFLE", "").strip()
    if not value:
        return None
    if value == "random":
        return random.SystemRandom().randrange(1, 10**6)
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(
            f"TEST_SHUFFLE must be an integer seed or 'random', not {value!r}"
        ) from None


_SEED = _seed()


def pytest_report_header(config: pytest.Config) -> str:
    if _SEED is None:
        return "test order: as written (TEST_SHUFFLE=<seed> shuffles it)"
    return f"test order: shuffled, TEST_SHUFFLE={_SEED}"


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if _SEED is None:
        return
    rng = random.Random(_SEED)
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = list(modules)
    rng.shuffle(order)
    shuffled: list[pytest.Item] = []
    for name in order:
        group = modules[name]
        rng.shuffle(group)
        shuffled.extend(group)
    items[:] = shuffled
