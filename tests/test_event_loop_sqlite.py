"""No coroutine calls SQLite directly: the event loop carries every stream and request.

A static check over the gateway package: inside an ``async def``, a call into a store
module (``*_store.…``, ``store.…``), an outbox or ``….db.…`` must go through
``asyncio.to_thread`` (or a thread of its own). Lifecycle methods (``start``/``stop``)
run before serving and after it, and may. Sync functions that the loop calls are not
seen here; the ``looplag`` part measures what remains (docs/benchmarks.md).
"""

from __future__ import annotations

import ast
import threading

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


async def test_a_camera_status_change_touches_the_database_off_the_loop(tmp_path) -> None:
    """The ingest reports status on the loop; the registry's writes go to its writer."""
    from gateway.store import events as event_store
    from tests.test_registry_api import MiniGateway

    gw = MiniGateway(tmp_path, {"cameras": [{"id": "cam-01", "rtsp_url": "rtsp://127.0.0.1:9/"}]})
    loop_thread = threading.get_ident()
    threads: list[int] = []
    for name in ("execute", "query", "query_one", "transaction"):
        real = getattr(gw.db, name)

        def spy(*args: object, _real=real, **kw: object) -> object:
            threads.append(threading.get_ident())
            return _real(*args, **kw)

        setattr(gw.db, name, spy)
    for status in ("online", "offline", "online", "online"):
        gw.registry.set_status("cam-01", status, "" if status == "online" else "no answer")
    await gw.registry.stop()  # the writer's pending work lands
    assert threads and loop_thread not in threads
    types = [e.type for e in event_store.query(gw.db, camera="cam-01")]
    assert sorted(types) == ["camera_offline", "camera_online", "camera_online"], types
