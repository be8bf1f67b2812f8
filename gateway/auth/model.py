"""Who is calling: the identity every protected request resolves to."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Caller:
    """A user (by name and role) or a machine token; ``scope`` limits it to a subtree."""

    name: str
    role: str
    scope: str = ""  # camera-path prefix this caller may see ("" = everything)
    kind: str = "user"  # "user" | "token" | "child"

    def allows(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, camera_path: str) -> bool:
        if not self.scope:
            return True
        scope = self.scope.strip("/")
        return camera_path == scope or camera_path.startswith(scope + "/")
