"""Linkage (报警联动): an event on one camera brings up, records and reports a group.

Rules (预案) come from ``settings.linkage`` and may be replaced at run time through
the API (kept in ``<data_dir>/linkage.json``). When an event matches a rule — camera
by exact path, subtree ``x/*`` or ``*``; type (``*`` for any); zone — the rule fires:

* a ``type="linkage"`` event is published with ``data = {"rule", "cameras", "wall",
  "trigger", ...}``; the SSE stream carries it (the video wall's instruction) and the
  uplink reports it to the parent like every event (unless ``report`` is false);
* each camera of the group is recorded for ``record_s`` **where it is** (the ``record``
  the part is handed, ``gateway.cascade.access.record``): a local camera by this
  gateway's recorder, a camera below a child by asking that child through the cascade.
  Recording at the owning gateway costs no uplink bandwidth and survives a thin or
  broken link, which recording a relayed stream here would not.

Loops are impossible by construction: a linkage event never triggers a rule, a rule
fires at most once per trigger event id, and at most once per ``cooldown_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from gateway.config import LinkageRule
from gateway.core import Core
from gateway.events.model import Event
from gateway.plans.service import Plans, Record

log = logging.getLogger(__name__)


def matches(rule: LinkageRule, event: Event) -> bool:
    """Whether ``event`` triggers ``rule`` (linkage events never do)."""
    if event.type == "linkage":
        return False
    m = rule.match
    if m.type not in ("*", event.type):
        return False
    pattern = m.camera
    if pattern != "*":
        if pattern.endswith("/*"):
            prefix = pattern[:-2]
            if not (event.camera == prefix or event.camera.startswith(prefix + "/")):
                return False
        elif event.camera != pattern:
            return False
    return not (m.zone and m.zone not in event.zones)


class Linkage:
    """The ``linkage`` part: listens to the bus and fires rules."""

    def __init__(self, core: Core, *, record: Record, plans: Plans | None = None) -> None:
        self.bus = core.bus
        self.record = record
        self.plans = plans  # a rule may launch a plan (预案) by name
        self.file = core.data_dir / "linkage.json"
        self.rules: list[LinkageRule] = list(core.settings.linkage)
        self.source = "config"
        if self.file.exists():
            try:
                raw = json.loads(self.file.read_text(encoding="utf-8"))
                self.rules = [LinkageRule.model_validate(r) for r in raw]
                self.source = str(self.file)
            except (OSError, ValueError) as err:
                log.error("linkage rules in %s ignored (%s); using the config's", self.file, err)
        self.fired = 0
        self.suppressed = 0
        self.record_errors = 0
        self._last_fire: dict[str, float] = {}
        self._triggers: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.bus.add_listener(self._on_event)
        log.info("linkage: %d rules (%s)", len(self.rules), self.source)

    async def stop(self) -> None:
        self.bus.remove_listener(self._on_event)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def set_rules(self, rules: list[LinkageRule]) -> None:
        """Replace the rules and keep them across restarts."""
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps([r.model_dump(mode="json") for r in rules], ensure_ascii=False, indent=2),
            encoding="utf-8",
        )
        tmp.replace(self.file)
        self.rules = list(rules)
        self.source = str(self.file)
        self._last_fire.clear()

    # -- firing ---------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        """Bus listener (publisher's thread): match quickly, fire on the loop."""
        if event.type == "linkage" or self._loop is None:
            return
        for rule in self.rules:
            if matches(rule, event):
                self._loop.call_soon_threadsafe(self._fire, rule, event)

    def _fire(self, rule: LinkageRule, trigger: Event) -> None:
        key = (rule.name, trigger.id)
        if key in self._triggers:
            return  # the same event published again (an update): already handled
        now = time.monotonic()
        cooldown = getattr(rule, "cooldown_s", 30.0)
        last = self._last_fire.get(rule.name)
        if last is not None and now - last < cooldown:
            self.suppressed += 1
            log.debug("linkage rule %s in cooldown; trigger %s ignored", rule.name, trigger.id)
            return
        self._last_fire[rule.name] = now
        self._triggers[key] = None
        while len(self._triggers) > 10_000:
            self._triggers.popitem(last=False)
        self.fired += 1
        event = Event(
            camera=trigger.camera,
            type="linkage",
            start=trigger.start,
            source="",
            data={
                "rule": rule.name,
                "cameras": list(rule.cameras),
                "wall": rule.wall,
                "trigger": trigger.id,
                "trigger_type": trigger.type,
                "record_s": rule.record_s,
                "report": rule.report,
            },
        )
        log.info("linkage rule %s fired by %s on %s", rule.name, trigger.type, trigger.camera)
        self.bus.publish(event)
        if rule.plan and self.plans is not None:
            self.plans.launch_soon(rule.plan, rule=rule.name)
        if rule.record_s > 0:
            task = asyncio.get_running_loop().create_task(self._record(rule, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record(self, rule: LinkageRule, event: Event) -> None:
        reason = f"linkage:{rule.name}"
        results = await asyncio.gather(
            *(self.record(cam, rule.record_s, reason) for cam in rule.cameras),
            return_exceptions=True,
        )
        outcome = {}
        for cam, result in zip(rule.cameras, results, strict=True):
            if isinstance(result, BaseException):
                self.record_errors += 1
                outcome[cam] = str(result)[:200] or type(result).__name__
                log.warning("linkage %s: cannot record %s: %s", rule.name, cam, outcome[cam])
            else:
                outcome[cam] = "recording"
        # The same event again, now saying what records: consumers key by id.
        with contextlib.suppress(Exception):
            self.bus.publish(
                event.model_copy(update={"data": {**event.data, "recording": outcome}})
            )

    def stats(self) -> dict[str, Any]:
        return {
            "rules": len(self.rules),
            "source": self.source,
            "fired": self.fired,
            "suppressed": self.suppressed,
            "record_errors": self.record_errors,
        }
