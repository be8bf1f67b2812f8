"""``/api/v1/linkage``: the linkage rules (预案), read by operators, replaced by admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.config import LinkageRule

router = APIRouter(tags=["linkage"])


@router.get("/api/v1/linkage")
def get_rules(
    gw: Gateway = Depends(get_gateway), caller: Caller = Depends(require("viewer"))
) -> dict[str, Any]:
    part = gw.linkage
    # A user scoped to a subtree sees the rules that stay inside it: a rule naming
    # cameras elsewhere would reveal them.
    rules = [r for r in part.rules if _inside(caller, r)]
    return {
        "rules": [r.model_dump(mode="json") for r in rules],
        "stats": part.stats() if not caller.scope else {},
    }


def _inside(caller: Caller, rule: LinkageRule) -> bool:
    if not caller.scope:
        return True
    trigger = rule.match.camera.removesuffix("/*")
    return (
        trigger not in ("", "*")
        and caller.sees(trigger)
        and all(caller.sees(c) for c in rule.cameras)
    )


@router.put("/api/v1/linkage")
def put_rules(
    rules: list[LinkageRule],
    request: Request,
    gw: Gateway = Depends(get_gateway),
    caller: Caller = Depends(require("admin")),
) -> dict[str, Any]:
    """Replace every rule at once (kept across restarts)."""
    part = gw.linkage
    if len(rules) > 1000:
        raise HTTPException(400, "at most 1000 rules")
    try:
        part.set_rules(rules)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    except OSError as err:
        raise HTTPException(500, f"cannot save the rules: {err.strerror}") from None
    note(gw, caller, "settings_change", request, what="linkage", rules=[r.name for r in rules])
    return get_rules(gw, caller)
