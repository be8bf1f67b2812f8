"""Shared FastAPI dependencies: the gateway object and the caller's identity/role."""

from __future__ import annotations

from fastapi import HTTPException, Request

from gateway.app import Gateway
from gateway.auth.model import ROLES, Caller

__all__ = ["ROLES", "Caller", "get_gateway", "require"]


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def _authenticate(request: Request) -> Caller:
    gw: Gateway = request.app.state.gateway
    if not gw.settings.auth.enabled:
        return Caller(name="anonymous", role="admin")
    token = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token:
        token = request.cookies.get("gw_session") or request.query_params.get("access_token")
    caller = gw.auth.verify(token) if token else None
    if caller is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required / 需要登录",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller


def require(role: str = "viewer"):
    """Dependency: the caller must be authenticated with at least ``role``."""

    def dependency(request: Request) -> Caller:
        caller = _authenticate(request)
        if not caller.allows(role):
            raise HTTPException(status_code=403, detail=f"requires role {role} / 权限不足")
        return caller

    return dependency
