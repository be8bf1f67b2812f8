"""The ``plans`` part: keeps plans (预案) and launches them.

A launch does, at once: the wall instruction (a ``type="plan"`` event on the bus, which
the operators' pages follow like a linkage), PTZ presets and recording wherever each
camera is (this gateway or a child: the ``ptz`` and ``record`` it is handed, which
``gateway.app`` binds to ``gateway.cascade.access``), and the optional MQTT / webhook
notification. Every launch is audited with who launched it,
by hand or by which linkage rule, and what each step did.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from gateway.aio import within
from gateway.audit import Audit
from gateway.core import Core
from gateway.events.model import Event
from gateway.events.mqtt import MqttNotifier
from gateway.plans.model import PlanIn
from gateway.store import plans as store

log = logging.getLogger(__name__)
STEP_TIMEOUT_S = 15.0
WEBHOOK_TIMEOUT_S = 5.0

Ptz = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends a PTZ command to a camera by path, wherever it is in the tree."""
Record = Callable[[str, float, str], Awaitable[dict[str, Any]]]
"""Records a camera by path for some seconds, with a reason, where the camera is."""


class PlanNotFound(KeyError):
    pass


class Plans:
    """Plans of one gateway; ``launch`` runs one."""

    def __init__(
        self,
        core: Core,
        *,
        ptz: Ptz,
        record: Record,
        audit: Audit | None = None,
        mqtt: MqttNotifier | None = None,
    ) -> None:
        self.db = core.db
        self.bus = core.bus
        self.ptz = ptz
        self.record = record
        self.audit = audit
        self.mqtt = mqtt  # None when MQTT is not configured (mqtt.host)
        self.launched = 0
        self.step_errors = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        store.init(self.db)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- keeping ------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        return store.list_all(self.db)

    def get(self, plan_id: int) -> dict[str, Any]:
        plan = store.get(self.db, plan_id)
        if plan is None:
            raise PlanNotFound(plan_id)
        return plan

    def add(self, plan: PlanIn, user: str) -> dict[str, Any]:
        """Raises ``store.PlanExists``."""
        plan_id = store.add(self.db, plan.name, plan.model_dump(mode="json"), user)
        return self.get(plan_id)

    def update(self, plan_id: int, plan: PlanIn) -> dict[str, Any]:
        if not store.update(self.db, plan_id, plan.name, plan.model_dump(mode="json")):
            raise PlanNotFound(plan_id)
        return self.get(plan_id)

    def delete(self, plan_id: int) -> None:
        if not store.delete(self.db, plan_id):
            raise PlanNotFound(plan_id)

    def by_name(self, name: str) -> dict[str, Any] | None:
        return store.by_name(self.db, name)

    # -- launching ----------------------------------------------------------------
    async def launch(
        self, plan_id: int, *, by: str, source: str = "manual", client: str = "", rule: str = ""
    ) -> dict[str, Any]:
        """Run the plan now; returns what each step did. Never raises for a failed step."""
        stored = self.get(plan_id)
        plan = PlanIn.model_validate({k: stored[k] for k in PlanIn.model_fields if k in stored})
        self.launched += 1
        cameras = plan.cameras()
        event = Event(
            camera=cameras[0] if cameras else "",
            type="plan",
            data={
                "plan": plan.name,
                "plan_id": plan_id,
                "cameras": [c.strip("/") for c in plan.wall],
                "layout": plan.layout,
                "wall": bool(plan.wall),
                "message": plan.message,
                "launched_by": by,
                "source": source,
                **({"rule": rule} if rule else {}),
            },
        )
        self.bus.publish(event)
        steps = await asyncio.gather(
            *(self._preset(s.camera.strip("/"), s.preset) for s in plan.presets),
            *(self._record(c.strip("/"), plan.record_s, plan.name) for c in plan.record),
        )
        results: list[dict[str, Any]] = [{"step": "wall", "cameras": event.data["cameras"]}]
        results += steps
        results += await self._notify(plan, event)
        failed = [r for r in results if r.get("ok") is False]
        self.step_errors += len(failed)
        outcome = {
            "plan_id": plan_id,
            "plan": plan.name,
            "event": event.id,
            "launched_by": by,
            "source": source,
            "steps": results,
            "ok": not failed,
        }
        # The same event again, now saying what each step did: consumers key by id.
        # Webhook URLs may carry a key: they stay out of what the bus spreads.
        public = [{k: v for k, v in r.items() if k != "url"} for r in results]
        self.bus.publish(event.model_copy(update={"data": {**event.data, "steps": public}}))
        if self.audit is not None:
            self.audit.record(
                by,
                "plan_launch",
                client=client,
                ok=not failed,
                plan=plan.name,
                plan_id=plan_id,
                source=source,
                rule=rule or None,
                cameras=cameras,
                failed=[f"{r['step']} {r.get('camera', '')}: {r['error']}" for r in failed] or None,
            )
        log.info(
            "plan %s launched by %s (%s): %d steps, %d failed",
            plan.name,
            by,
            source,
            len(results),
            len(failed),
        )
        return outcome

    def launch_soon(self, name: str, *, rule: str) -> bool:
        """Launch a plan by name from a linkage rule (on the event loop); False if unknown."""
        stored = self.by_name(name)
        if stored is None:
            log.warning("linkage rule %s names an unknown plan %r", rule, name)
            return False
        task = asyncio.get_running_loop().create_task(
            self.launch(stored["id"], by=f"linkage:{rule}", source="linkage", rule=rule)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _preset(self, camera: str, preset: str) -> dict[str, Any]:
        step = {"step": "preset", "camera": camera, "preset": preset}
        try:
            command = {"action": "goto_preset", "preset": preset}
            await within(self.ptz(camera, command), STEP_TIMEOUT_S)
        except Exception as err:
            return {**step, "ok": False, "error": _reason(err)}
        return {**step, "ok": True}

    async def _record(self, camera: str, seconds: float, plan: str) -> dict[str, Any]:
        step = {"step": "record", "camera": camera, "seconds": seconds}
        try:
            reason = f"plan:{plan}"
            await within(self.record(camera, seconds, reason), STEP_TIMEOUT_S)
        except Exception as err:
            return {**step, "ok": False, "error": _reason(err)}
        return {**step, "ok": True}

    async def _notify(self, plan: PlanIn, event: Event) -> builtins.list[dict[str, Any]]:
        out: builtins.list[dict[str, Any]] = []
        payload = event.model_dump(mode="json")
        if plan.notify.mqtt_topic:
            mqtt = self.mqtt
            step = {"step": "mqtt", "topic": plan.notify.mqtt_topic}
            if mqtt is None:
                out.append({**step, "ok": False, "error": "MQTT is not configured (mqtt.host)"})
            else:
                mqtt.publish(plan.notify.mqtt_topic, json.dumps(payload, ensure_ascii=False))
                out.append({**step, "ok": True})
        if plan.notify.webhook:
            out.append(await self._webhook(str(plan.notify.webhook), payload))
        return out

    async def _webhook(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        step: dict[str, Any] = {"step": "webhook", "url": url}
        t0 = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False) as c:
                r = await c.post(url, json=payload)
        except httpx.HTTPError as err:
            return {**step, "ok": False, "error": _reason(err)}
        step["status"] = r.status_code
        step["ms"] = round((time.monotonic() - t0) * 1000)
        if r.status_code >= 300:
            return {**step, "ok": False, "error": f"HTTP {r.status_code}"}
        return {**step, "ok": True}


def _reason(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return f"no answer within {STEP_TIMEOUT_S:g} s"
    return (str(err) or type(err).__name__)[:200]
