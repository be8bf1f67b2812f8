"""``/api/v1/auth``: login (bearer token or cookie session), logout, users, API tokens."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from gateway.api.audit import note
from gateway.api.deps import Caller, get_gateway, require
from gateway.app import Gateway
from gateway.auth.service import AuthError, RateLimited

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
COOKIE = "gw_session"


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int | None


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=256)
    role: Literal["viewer", "operator", "admin"] = "viewer"
    scope: str = Field("", max_length=512, description="Camera subtree, e.g. town-a/village-3")


class UserPatch(BaseModel):
    password: str | None = Field(None, min_length=8, max_length=256)
    role: Literal["viewer", "operator", "admin"] | None = None
    scope: str | None = Field(None, max_length=512)
    disabled: bool | None = None


class ApiTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    ttl_s: int | None = Field(None, ge=60, le=10 * 365 * 86400)


def _login(request: Request, gw: Gateway, creds: Credentials) -> TokenOut:
    client = request.client.host if request.client else ""
    try:
        issued = gw.auth.login(creds.username, creds.password, client)
    except RateLimited as err:
        note(gw, creds.username[:64], "login_failed", request, ok=False, reason="rate limited")
        raise HTTPException(
            429, str(err), headers={"Retry-After": str(int(err.retry_after) + 1)}
        ) from None
    except AuthError as err:
        note(gw, creds.username[:64], "login_failed", request, ok=False)
        raise HTTPException(401, str(err)) from None
    note(gw, creds.username, "login", request)
    return TokenOut(access_token=issued.token, expires_in=issued.expires_in)


@router.post("/token", response_model=TokenOut)
def token(request: Request, creds: Credentials, gw: Gateway = Depends(get_gateway)) -> TokenOut:
    """Exchange a username and password for a bearer token."""
    return _login(request, gw, creds)


@router.post("/login", response_model=TokenOut)
def login(
    request: Request, response: Response, creds: Credentials, gw: Gateway = Depends(get_gateway)
) -> TokenOut:
    """Like /token, and also sets an HttpOnly session cookie for the browser UI."""
    out = _login(request, gw, creds)
    response.set_cookie(
        COOKIE,
        out.access_token,
        max_age=out.expires_in,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return out


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, gw: Gateway = Depends(get_gateway)) -> None:
    header = request.headers.get("authorization", "")
    tok = (
        header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    )
    if tok:
        who = gw.auth.verify(tok)
        gw.auth.logout(tok)
        if who is not None:
            note(gw, who, "logout", request)
    response.delete_cookie(COOKIE)


@router.get("/me")
def me(caller: Caller = Depends(require("viewer"))) -> dict[str, Any]:
    return {"username": caller.name, "role": caller.role, "scope": caller.scope}


@router.get("/users")
def users(
    _: Caller = Depends(require("admin")), gw: Gateway = Depends(get_gateway)
) -> list[dict[str, Any]]:
    return gw.auth.users()


@router.post("/users", status_code=201)
def create_user(
    body: UserIn,
    request: Request,
    caller: Caller = Depends(require("admin")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    try:
        gw.auth.create_user(body.username, body.password, body.role, body.scope)
    except KeyError:
        raise HTTPException(409, f"user {body.username!r} exists / 用户已存在") from None
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    note(gw, caller, "user_change", request, op="create", target=body.username, role=body.role)
    return {"username": body.username, "role": body.role, "scope": body.scope.strip("/")}


@router.patch("/users/{username}")
def patch_user(
    username: str,
    body: UserPatch,
    request: Request,
    caller: Caller = Depends(require("admin")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    try:
        found = gw.auth.update_user(username, **body.model_dump(exclude_none=True))
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    if not found:
        raise HTTPException(404, f"no user {username!r} / 用户不存在")
    changed = sorted(body.model_dump(exclude_none=True))  # names only: never the password
    note(gw, caller, "user_change", request, op="update", target=username, fields=changed)
    return next(u for u in gw.auth.users() if u["username"] == username)


@router.delete("/users/{username}", status_code=204)
def delete_user(
    username: str,
    request: Request,
    caller: Caller = Depends(require("admin")),
    gw: Gateway = Depends(get_gateway),
) -> None:
    if username == caller.name:
        raise HTTPException(409, "you cannot delete yourself / 不能删除当前用户")
    if not gw.auth.delete_user(username):
        raise HTTPException(404, f"no user {username!r} / 用户不存在")
    note(gw, caller, "user_change", request, op="delete", target=username)


@router.post("/api-tokens", status_code=201)
def create_api_token(
    body: ApiTokenIn,
    request: Request,
    caller: Caller = Depends(require("admin")),
    gw: Gateway = Depends(get_gateway),
) -> dict[str, Any]:
    """A machine token acting as the calling admin; shown once."""
    issued = gw.auth.issue(caller.name, "api", ttl=body.ttl_s, name=body.name)
    note(gw, caller, "user_change", request, op="api_token", target=body.name)
    return {"access_token": issued.token, "token_type": "bearer", "expires_in": issued.expires_in}
