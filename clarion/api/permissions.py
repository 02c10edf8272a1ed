"""Roles and what each may do: the one table the API enforces and the README prints."""

from __future__ import annotations

ROLES: tuple[str, ...] = ("engineer", "marketer", "approver", "compliance", "service")

# permission -> (what it covers, roles that hold it)
PERMISSIONS: dict[str, tuple[str, frozenset[str]]] = {
    "read:aggregates": (
        "segments, runs, models, quality, lineage, results, deployments",
        frozenset(ROLES),
    ),
    "read:customer": (
        "one customer by pseudonym: score, segment, reasons, next best action",
        frozenset(ROLES),
    ),
    "read:contact_id": (
        "look a customer up by CRM contact id, and see contact ids",
        frozenset({"engineer", "compliance", "service"}),
    ),
    "read:drafts": (
        "drafts with their checks, provenance and brief",
        frozenset({"engineer", "marketer", "approver", "compliance"}),
    ),
    "draft:edit": (
        "edit one part of a draft (it needs approving again)",
        frozenset({"marketer", "approver"}),
    ),
    "draft:decide": ("approve or reject a draft", frozenset({"approver"})),
    "draft:generate": ("draft on demand from a brief", frozenset({"marketer", "approver", "service"})),
    "run:trigger": ("start a deployment run", frozenset({"engineer", "service"})),
    "subject:request": (
        "data-subject requests: access, erase, object, correct",
        frozenset({"compliance"}),
    ),
}


def allowed(role: str, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (an unknown permission is held by nobody)."""
    entry = PERMISSIONS.get(permission)
    return entry is not None and role in entry[1]


def table_markdown() -> str:
    """The permission table as Markdown (README, docs/api.md; a test keeps them equal to this)."""
    head = "| permission | what it covers | " + " | ".join(ROLES) + " |"
    rule = "|---|---|" + "---|" * len(ROLES)
    rows = [
        f"| `{name}` | {what} | " + " | ".join("yes" if r in roles else "-" for r in ROLES) + " |"
        for name, (what, roles) in PERMISSIONS.items()
    ]
    return "\n".join([head, rule, *rows])
