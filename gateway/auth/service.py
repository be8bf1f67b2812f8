"""The ``auth`` part: password login, expiring sessions, API tokens, rate limiting.

Passwords are hashed with Argon2id (argon2-cffi); tokens are 256-bit random strings
stored only as SHA-256 hashes, so a stolen database holds no usable credential.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.auth.model import ROLES, Caller
from gateway.config import AuthSettings
from gateway.store import users as user_store
from gateway.store.db import Database

log = logging.getLogger(__name__)
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-@")


class AuthError(Exception):
    """Login refused; the message is safe to show (it never says which part was wrong)."""


class RateLimited(AuthError):
    def __init__(self, retry_after: float) -> None:
        super().__init__("too many login attempts, try again later / 登录尝试过多，请稍后再试")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_username(name: str) -> str:
    if not 1 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
        raise ValueError("username: 1-64 characters of letters, digits, _ . - @")
    return name


def validate_password(password: str) -> str:
    if len(password) < 8 or len(password) > 256:
        raise ValueError("password: 8 to 256 characters / 密码长度 8-256")
    return password


class AuthService:
    """Users and tokens of one gateway."""

    def __init__(self, db: Database, settings: AuthSettings) -> None:
        self.db = db
        self.settings = settings
        self.hasher = PasswordHasher()
        self._attempts: dict[str, deque[float]] = defaultdict(deque)
        user_store.init(db)
        # A hash to verify against for unknown users, so timing does not tell them apart.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        self.failed_logins = 0

    async def start(self) -> None:
        self.ensure_admin(os.environ.get("GATEWAY_ADMIN_PASSWORD") or None)
        user_store.purge_expired(self.db, time.time())

    async def stop(self) -> None:
        return None

    def ensure_admin(self, password: str | None) -> None:
        """On first start create ``admin``: with the given password, or a printed one."""
        if user_store.count(self.db) > 0:
            return
        printed = password is None
        if printed:
            password = secrets.token_urlsafe(12)
        assert password is not None
        user_store.create(self.db, "admin", self.hasher.hash(password), "admin")
        if printed:
            # Printed once to the console, deliberately not through logging (log files
            # and shippers must never hold a password).
            print(
                f"\n  初始管理员 / initial admin: user 'admin', password '{password}'\n"
                "  (shown once; set GATEWAY_ADMIN_PASSWORD to choose it)\n",
                file=sys.stderr,
                flush=True,
            )
        log.info("created the initial admin user")

    # -- login -------------------------------------------------------------------
    def _check_rate(self, key: str) -> None:
        """Refuse when this client+user failed too often in the last minute."""
        now = time.monotonic()
        window = self._attempts.get(key)
        if not window:
            return
        while window and window[0] < now - 60:
            window.popleft()
        if len(window) >= self.settings.login_attempts_per_min:
            raise RateLimited(60 - (now - window[0]))

    def _record_failure(self, key: str) -> None:
        if len(self._attempts) > 10000:  # bound memory against address sprays
            self._attempts.clear()
        self._attempts[key].append(time.monotonic())

    def login(self, username: str, password: str, client: str = "") -> Issued:
        """Check a password and issue a session token. Raises AuthError / RateLimited."""
        key = f"{client}|{username}"
        self._check_rate(key)
        row = user_store.get(self.db, username)
        try:
            self.hasher.verify(row["password_hash"] if row else self._dummy_hash, password)
            ok = row is not None and not row["disabled"]
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None:
            self.failed_logins += 1
            self._record_failure(key)
            log.warning("login failed for user %r from %s", username[:64], client or "?")
            raise AuthError("wrong username or password / 用户名或密码错误")
        if self.hasher.check_needs_rehash(row["password_hash"]):
            user_store.update(self.db, username, password_hash=self.hasher.hash(password))
        return self.issue(username, "session", ttl=self.settings.session_ttl_s)

    def issue(self, username: str, kind: str, ttl: int | None = None, name: str = "") -> Issued:
        token = secrets.token_urlsafe(32)
        expires = time.time() + ttl if ttl else None
        user_store.add_token(self.db, hash_token(token), username, kind, name, expires)
        return Issued(token, ttl)

    def verify(self, token: str) -> Caller | None:
        if not token or len(token) > 512:
            return None
        row = user_store.token_owner(self.db, hash_token(token), time.time())
        if row is None:
            return None
        kind = "token" if row["kind"] == "api" else "user"
        return Caller(name=row["username"], role=row["role"], scope=row["scope"], kind=kind)

    def logout(self, token: str) -> None:
        user_store.delete_token(self.db, hash_token(token))

    # -- users ---------------------------------------------------------------------
    def create_user(self, username: str, password: str, role: str, scope: str = "") -> None:
        validate_username(username)
        validate_password(password)
        if role not in ROLES:
            raise ValueError(f"role: one of {', '.join(ROLES)}")
        if user_store.get(self.db, username):
            raise KeyError(username)
        user_store.create(self.db, username, self.hasher.hash(password), role, scope.strip("/"))

    def update_user(
        self,
        username: str,
        *,
        password: str | None = None,
        role: str | None = None,
        scope: str | None = None,
        disabled: bool | None = None,
    ) -> bool:
        fields: dict[str, object] = {}
        if password is not None:
            fields["password_hash"] = self.hasher.hash(validate_password(password))
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role: one of {', '.join(ROLES)}")
            fields["role"] = role
        if scope is not None:
            fields["scope"] = scope.strip("/")
        if disabled is not None:
            fields["disabled"] = int(disabled)
        if not user_store.get(self.db, username):
            return False
        if fields:
            user_store.update(self.db, username, **fields)
        if password is not None or disabled:
            user_store.delete_user_sessions(self.db, username)
        return True

    def delete_user(self, username: str) -> bool:
        return user_store.delete(self.db, username) > 0

    def users(self) -> list[dict[str, object]]:
        return [
            {
                "username": r["username"],
                "role": r["role"],
                "scope": r["scope"],
                "disabled": bool(r["disabled"]),
            }
            for r in user_store.list_users(self.db)
        ]
