"""Inspection on demand of any subtree (按需巡检), carried down the cascade as ``inspect``.

An operator at the city (or a town) asks for a fresh inspection of a node: the
gateway itself, a town, a village, with (by default) the whole tree below it. The
request walks down the tree like every other cascade request (a ``Request`` on the
child's own connection, one hop at a time): each gateway on the way runs its own
inspection now (:meth:`gateway.reports.service.ReportService.run`) and asks its
children. Each run publishes its report as an ``inspection`` event carrying the run
id, which climbs through the uplinks' durable outboxes like the daily reports, so
the rows arrive even from a child that was offline: the hop above it keeps the
request (in its database, with the day asked for) and sends it when the child
connects again.

Paths: ``inspect`` names a gateway node as the receiving child's parent sees it,
i.e. starting with the child's own id (``town-a/village-1`` sent to ``town-a``),
because a gateway's own node has no shorter name. Answers list every gateway node
of the subtree with its state, paths as the parent sees them:

- ``ran``: inspected now; its rows are on their way up (or arrived);
- ``offline``: the child is not connected; it runs when it comes back;
- ``no_answer``: asked, but no answer in time (the rows may still come);
- ``error``: the node could not inspect (reports off, a bad day …).

The gateway where the operator asked keeps the run (:class:`Run`) and marks a node
``arrived`` when its event with the run id is stored here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from gateway.aio import within
from gateway.cascade import access
from gateway.cascade import protocol as p
from gateway.cascade.access import AccessError
from gateway.cascade.downlink import Downlink
from gateway.cascade.local import Local
from gateway.cascade.session import ChildGone, ChildLink, RemoteError
from gateway.cascade.tree import build, find_camera
from gateway.core import Core
from gateway.events.model import Event
from gateway.reports.service import ReportService
from gateway.store import reports as report_store

log = logging.getLogger(__name__)
STATES = ("ran", "offline", "no_answer", "error")
MAX_NODES = 1000  # gateway nodes listed in one answer
MAX_PENDING = 16  # requests kept per offline child
MAX_RUNS = 50  # runs remembered where they were asked
BUDGET_S = 20.0  # how long the asking gateway waits for the tree's answers
HOP_S = 3.0  # each hop answers this much sooner than the one above waits
SNAPSHOT_S = 4.0  # one camera's fresh snapshot
SNAPSHOTS_S = 8.0  # all of a gateway's snapshots (its rows go without the late ones)


@dataclass
class Run:
    """One on-demand inspection, as the gateway that was asked for it tracks it."""

    id: str
    node: str  # relative to this gateway, "" = this gateway
    day: str | None
    subtree: bool
    by: str
    requested: float = field(default_factory=time.time)
    answered: float | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)


def gateway_nodes(node: p.GatewayNode) -> list[str]:
    """Every gateway path in ``node``'s subtree (its own first)."""
    out = [node.path]
    for child in node.children:
        out += gateway_nodes(child)
    return out[:MAX_NODES]


def _find_node(root: p.GatewayNode, path: str) -> p.GatewayNode | None:
    if root.path == path:
        return root
    for child in root.children:
        if p.under(path, child.path):
            return _find_node(child, path)
    return None


class Inspections:
    """Runs, forwards and tracks on-demand inspections (see the module docstring)."""

    def __init__(self, core: Core, here: Local, downlink: Downlink) -> None:
        self.db = core.db
        self.bus = core.bus
        self.here = here
        self.downlink = downlink
        self.me = core.settings.cascade.id
        self.pending: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self._lock = threading.Lock()  # runs are marked from the bus's threads
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        # kept requests survive a restart of this gateway (a town rebooted meanwhile)
        kept = await asyncio.to_thread(self._load_pending)
        for child, path, params in kept:
            self.pending.setdefault(child, []).append((path, params))
        if kept:
            log.info("%d inspection requests kept for children that were offline", len(kept))
        self.bus.add_listener(self._on_event)
        self.downlink.on_change(self._on_child_change)

    async def stop(self) -> None:
        self.bus.remove_listener(self._on_event)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- asked here by an operator -------------------------------------------------------
    async def start_run(
        self, node: str, day: date | None, subtree: bool, by: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Inspect ``node`` (relative to this gateway, "" = here) and what lies below.

        Returns the run's status and this gateway's own report when it was inspected.
        Raises LookupError for an unknown node, ValueError for a camera or a bad day.
        """
        node = node.strip("/")
        reports = self.here.reports
        if day is not None and reports is not None and day > reports.today():
            raise ValueError(f"{day} is in the future / 日期不能晚于今天")
        if node:
            tree = build(self.here)
            if _find_node(tree, node) is None:
                if find_camera(tree, node) is not None:
                    raise ValueError(
                        f"{node!r} is a camera, not a node: inspect its gateway"
                        f" {node.rsplit('/', 1)[0] if '/' in node else self.me!r} / 请选择节点"
                    )
                raise LookupError(f"unknown node {node!r} / 未知节点")
        run = Run(uuid.uuid4().hex[:16], node, day.isoformat() if day else None, subtree, by)
        with self._lock:
            self.runs[run.id] = run
            while len(self.runs) > MAX_RUNS:
                self.runs.popitem(last=False)
        params = {"run": run.id, "day": run.day, "subtree": subtree, "budget": BUDGET_S}
        parts = node.split("/") if node else []
        try:
            states, report = await self.inspect(parts, params)
        except AccessError as err:
            with self._lock:
                self.runs.pop(run.id, None)
            if err.status == 404:
                raise LookupError(str(err)) from None
            raise ValueError(str(err)) from None
        with self._lock:
            for s in states:
                run.nodes[s["node"]] = s
            if report is not None:
                run.arrived[""] = time.time()  # stored here already
            run.answered = time.time()
        return self.status(run.id) or {}, report

    def status(self, run_id: str) -> dict[str, Any] | None:
        """The run's nodes: ``arrived``, ``waiting``, ``offline`` or ``error``."""
        with self._lock:
            run = self.runs.get(run_id)
            if run is None:
                return None
            nodes = []
            for path, s in sorted(run.nodes.items()):
                state = s["state"]
                if path in run.arrived:
                    state = "arrived"
                elif state in ("ran", "no_answer"):
                    state = "waiting"
                nodes.append(
                    {
                        "node": path or self.me,
                        "state": state,
                        "cameras": s.get("cameras"),
                        "error": s.get("error", ""),
                        "arrived": run.arrived.get(path),
                    }
                )
        counts = {k: sum(1 for n in nodes if n["state"] == k) for k in _SHOWN}
        return {
            "id": run.id,
            "node": run.node or self.me,
            "path": run.node,  # relative to this gateway ("" = this gateway)
            "day": run.day,
            "subtree": run.subtree,
            "by": run.by,
            "requested": run.requested,
            "answered": run.answered,
            "nodes": nodes,
            "counts": counts,
            "complete": bool(nodes) and counts["arrived"] + counts["error"] == len(nodes),
        }

    def recent(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = list(reversed(self.runs))
        return [s for i in ids if (s := self.status(i)) is not None]

    def _on_event(self, event: Event) -> None:
        """Bus listener (any thread): a report of a run asked here has arrived."""
        run_id = event.data.get("run") if event.type == "inspection" else None
        if not isinstance(run_id, str) or event.source in ("", self.me):
            return
        with self._lock:
            run = self.runs.get(run_id)
            if run is not None:
                run.arrived.setdefault(event.source, time.time())

    # -- asked by the parent ---------------------------------------------------------------
    async def answer(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """The ``inspect`` request from the parent: ``path`` starts with our own id."""
        first, _, rest = path.partition("/")
        if first != self.me:
            raise AccessError(404, f"inspect {path!r}: this gateway is {self.me!r} / 未知节点")
        states, _ = await self.inspect(rest.split("/") if rest else [], _clean(params))
        nodes = [{**s, "node": f"{self.me}/{s['node']}" if s["node"] else self.me} for s in states]
        return {"nodes": nodes[:MAX_NODES]}

    # -- one hop ----------------------------------------------------------------------------
    async def inspect(
        self, rel: list[str], params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Inspect the node ``rel`` below this gateway ([] = here); states relative to us."""
        if rel:
            name = rel[0]
            if name not in self.downlink.links:
                raise AccessError(404, f"unknown node {'/'.join(rel)!r} / 未知节点")
            return await self._ask(name, "/".join(rel), params), None
        states: list[dict[str, Any]] = []
        report = None
        try:
            report = await self._run_here(params)
            states.append({"node": "", "state": "ran", "cameras": report["cameras"]})
        except AccessError as err:
            states.append({"node": "", "state": "error", "error": str(err)[:200]})
        if params.get("subtree", True):
            asks = [self._ask(name, name, params) for name in sorted(self.downlink.links)]
            for answer in await asyncio.gather(*asks):
                states += answer
        return states[:MAX_NODES], report

    async def _run_here(self, params: dict[str, Any]) -> dict[str, Any]:
        reports = self.here.reports
        if reports is None:
            raise AccessError(503, "inspection reports are turned off here / 未启用巡检")
        day = date.fromisoformat(params["day"]) if params.get("day") else None
        with contextlib.suppress(TimeoutError):  # rows without a picture rather than late
            await within(self._snapshots(reports), SNAPSHOTS_S)
        try:
            return await asyncio.to_thread(reports.run, day, True, params["run"])
        except ValueError as err:
            raise AccessError(400, str(err)) from None

    async def _snapshots(self, reports: ReportService) -> None:
        """A fresh snapshot of each local camera not known to be down, kept for its row."""
        registry = self.here.registry

        def down(cid: str) -> bool:
            cam = registry.get(cid) if registry is not None else None
            status = cam.public().get("status") if cam is not None else None
            return status in ("offline", "unauthorised", "error")

        gate = asyncio.Semaphore(4)

        async def one(cid: str) -> None:
            async with gate:
                try:
                    jpeg = await within(access.snapshot(self.here, cid), SNAPSHOT_S)
                    await asyncio.to_thread(reports.put_snapshot, cid, jpeg)
                except Exception as err:  # one camera's picture must not fail the run
                    log.info("inspection snapshot of %s failed: %s", cid, err or type(err))

        cams = await asyncio.to_thread(reports.cameras)
        await asyncio.gather(*(one(cid) for cid, _ in cams if not down(cid)))

    async def _ask(self, name: str, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Ask child ``name`` to inspect ``path`` (which starts with its name)."""
        link = self.downlink.links[name]
        known = _find_node(link.node(), path)
        below = gateway_nodes(known) if known is not None else [path]
        session = link.session
        if session is None or session.closed:  # not link.online
            await self._pend(name, path, params)
            return [{"node": n, "state": "offline"} for n in below]
        budget = float(params.get("budget", BUDGET_S))
        try:
            resp = await session.request(
                "inspect", path, {**params, "budget": max(1.0, budget - HOP_S)}, timeout=budget
            )
        except ChildGone:
            await self._pend(name, path, params)
            return [{"node": n, "state": "offline"} for n in below]
        except RemoteError as err:  # no answer in time: the rows may still come
            return [{"node": n, "state": "no_answer", "error": str(err)[:200]} for n in below]
        if not resp.ok:
            return [{"node": path, "state": "error", "error": resp.error[:200]}]
        return _checked(resp.data, name)

    # -- children that were offline --------------------------------------------------------
    def _load_pending(self) -> list[tuple[str, str, dict[str, Any]]]:
        report_store.init(self.db)
        return report_store.pending_all(self.db)

    async def _pend(self, name: str, path: str, params: dict[str, Any]) -> None:
        reports = self.here.reports
        if not params.get("day") and reports is not None:
            # the day asked for, not the day the child comes back
            params = {**params, "day": reports.today().isoformat()}
        queue = self.pending.setdefault(name, [])
        queue.append((path, params))
        del queue[:-MAX_PENDING]
        await asyncio.to_thread(report_store.pending_add, self.db, name, path, params, MAX_PENDING)
        log.info("inspection %s of %s kept until child %s connects", params["run"], path, name)

    def _on_child_change(self, kind: str, value: Any) -> None:
        if kind != "node" or value not in self.pending:
            return
        link = self.downlink.links.get(value)
        if link is None or link.online:  # forgotten (revoked), or back: ask it now
            queue = self.pending.pop(value)
            task = asyncio.get_running_loop().create_task(self._resend(value, queue, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resend(
        self, name: str, queue: list[tuple[str, dict[str, Any]]], link: ChildLink | None
    ) -> None:
        await asyncio.to_thread(report_store.pending_clear, self.db, name)
        if link is None:
            return
        for path, params in queue:
            log.info("child %s is back: asking it for inspection %s", name, params["run"])
            with contextlib.suppress(Exception):
                await self._ask(name, path, params)


_SHOWN = ("arrived", "waiting", "offline", "error")


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    """The parent's parameters, checked (a child trusts its parent no more than that)."""
    run = params.get("run")
    if not isinstance(run, str) or not 1 <= len(run) <= 64 or not run.isalnum():
        raise AccessError(400, "inspect needs a run id")
    day = params.get("day")
    if day is not None:
        try:
            date.fromisoformat(str(day))
        except ValueError:
            raise AccessError(400, f"bad day {str(day)[:20]!r}: YYYY-MM-DD") from None
    try:
        budget = min(max(float(params.get("budget", BUDGET_S)), 1.0), 60.0)
    except (TypeError, ValueError):
        budget = BUDGET_S
    return {"run": run, "day": day, "subtree": params.get("subtree") is not False, "budget": budget}


def _checked(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A child's answer, keeping only well-formed entries inside its own subtree."""
    out: list[dict[str, Any]] = []
    nodes = data.get("nodes")
    for item in nodes[:MAX_NODES] if isinstance(nodes, list) else []:
        if not isinstance(item, dict):
            continue
        path, state = item.get("node"), item.get("state")
        if not isinstance(path, str) or not p.valid_path(path) or not p.under(path, name):
            continue
        if state not in STATES:
            continue
        cameras = item.get("cameras")
        out.append(
            {
                "node": path,
                "state": state,
                "cameras": cameras if isinstance(cameras, int) and cameras >= 0 else None,
                "error": str(item.get("error") or "")[:200],
            }
        )
    return out
