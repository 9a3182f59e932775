"""Who may do what on a site: the three site roles and the instance admin.

One table, so every handler asks the same question (``may(account, site, action)``)
and a test can walk every action for every role.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Role = Literal["owner", "analyst", "viewer"]
ROLES: tuple[Role, ...] = ("owner", "analyst", "viewer")


class Action(StrEnum):
    """Everything a site member can be allowed to do."""

    VIEW_SITE = "view_site"  # the site's overview page and recorder snippet
    LIST_SESSIONS = "list_sessions"
    REPLAY = "replay"
    EXPORT = "export"  # one session's masked events as a file
    RUN_SQL = "run_sql"
    EDIT_SETTINGS = "edit_settings"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_TOKENS = "manage_tokens"
    ERASE = "erase"
    VIEW_AUDIT = "view_audit"


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    "viewer": frozenset({Action.VIEW_SITE, Action.LIST_SESSIONS, Action.REPLAY, Action.EXPORT}),
    # Analysts query aggregates; they do not watch individual visitors.
    "analyst": frozenset({Action.VIEW_SITE, Action.RUN_SQL}),
    "owner": frozenset(Action),
}


def role_allows(role: Role | None, action: Action) -> bool:
    """True if a member with ``role`` (None: not a member) may do ``action``."""
    return role is not None and action in ROLE_ACTIONS[role]


def parse_role(text: str) -> Role:
    """The role named ``text``; ValueError names the choices."""
    for role in ROLES:
        if role == text:
            return role
    raise ValueError(f"role must be one of {', '.join(ROLES)}")
