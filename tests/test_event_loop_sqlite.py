"""No coroutine calls SQLite directly: the event loop carries every stream and request.

A static check over the gateway package: inside an ``async def``, a call into a store
module (``*_store.…``, ``store.…``), an outbox or ``….db.…`` must go through
``asyncio.to_thread`` (or a thread of its own). Lifecycle methods (``start``/``stop``)
run before serving and after it, and may. Sync functions that the loop calls are not
seen here; the ``looplag`` part measures what remains (docs/benchmarks.md).
"""

from __future__ import annotations

import ast

from tests.support import ROOT

LIFECYCLE = {"start", "stop"}


def direct_database_calls() -> list[str]:
    found = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.AsyncFunctionDef) or fn.name in LIFECYCLE:
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Call):
                    continue
                callee = ast.unparse(node.func)
                if any(k in callee for k in ("store.", "outbox.", ".db.")):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {fn.name}: {callee}")
    return found


def test_no_coroutine_calls_the_database_on_the_event_loop() -> None:
    assert direct_database_calls() == []
