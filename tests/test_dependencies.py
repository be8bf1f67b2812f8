"""What the code imports is declared, and requirements.lock is what the tests run on.

``scripts/setup`` installs with ``pip install -c requirements.lock``, so a fresh
machine gets the versions tested here; ``scripts/lock`` rewrites the file from .venv.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(extra: str | None = None) -> list[Requirement]:
    reqs = project()["dependencies"]
    if extra:
        reqs = reqs + project()["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def locked() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and re.fullmatch(r"[\w.+!-]+", version), f"not an exact pin: {line!r}"
        out[canonicalize_name(name)] = version
    return out


def imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported by the gateway package -> a file importing it."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("gateway", "__future__"):
                    out.setdefault(top, str(path.relative_to(ROOT)))
    return out


def test_every_module_the_gateway_imports_comes_from_a_declared_dependency() -> None:
    providers = metadata.packages_distributions()
    names = {canonicalize_name(r.name) for r in declared()}
    undeclared = {
        module: (where, providers.get(module))
        for module, where in imported_modules().items()
        if not {canonicalize_name(d) for d in providers.get(module, [])} & names
    }
    assert undeclared == {}, f"imported but not in [project].dependencies: {undeclared}"


def test_requirements_lock_pins_every_declared_dependency_within_its_bounds() -> None:
    lock = locked()
    for req in declared("test"):
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is declared but not in requirements.lock (scripts/lock)"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"requirements.lock has {req.name}=={lock[name]}, outside {req}"
        )
    assert "gateway" not in lock


def test_the_tests_run_on_exactly_the_locked_versions() -> None:
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a dependency of an optional tool, not installed here
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, f"locked vs installed (re-run scripts/setup, or scripts/lock): {wrong}"
