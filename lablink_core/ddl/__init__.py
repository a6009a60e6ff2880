"""The schema's DDL, one module per Alembic revision, in order.

Each Alembic revision runs its module's ``statements``; ``lablink db init-sql`` runs all of
them in order. Both paths execute the same text, so they build the same schema. A landed
revision's module never changes: a change to the schema is a new module here and a new
migration that runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lablink_core.ddl import v0001, v0002, v0003
from lablink_core.models import checked_identifier


@dataclass(frozen=True)
class Revision:
    """One schema revision: its Alembic id and its statements."""

    id: str
    statements: Callable[[str, str], list[str]]


REVISIONS: tuple[Revision, ...] = (
    Revision("0001", v0001.statements),
    Revision("0002", v0002.statements),
    Revision("0003", v0003.statements),
)
HEAD_REVISION = REVISIONS[-1].id


def revision_statements(revision: str, table_name: str, channel: str) -> list[str]:
    """The statements of one revision for this VM table and NOTIFY channel."""
    table, channel = checked_identifier(table_name), checked_identifier(channel)
    for entry in REVISIONS:
        if entry.id == revision:
            return entry.statements(table, channel)
    raise KeyError(f"no schema revision {revision!r}")


def all_statements(table_name: str, channel: str) -> list[str]:
    """Every revision's statements in order: the schema at head, from an empty database."""
    return [s for entry in REVISIONS for s in revision_statements(entry.id, table_name, channel)]
