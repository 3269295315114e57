"""The dashboard's roles, lowest first."""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")
"""viewer: read only; operator: actions on jobs and queues; admin: also delete and empty."""


def role_rank(role: str) -> int:
    return ROLES.index(role) if role in ROLES else -1
