"""Credentials per VM, health and activity, the assignable index, actions, logs, waitlist,
schedules, leases, settings, admin sessions and throttling (see lablink_core.ddl.v0002).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from lablink_core.ddl import revision_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(*, table_name: str, channel: str) -> None:
    for statement in revision_statements("0002", table_name, channel):
        op.execute(statement)


def downgrade(*, table_name: str, channel: str) -> None:
    raise NotImplementedError("revision 0002 is not reversible: restore a backup instead")
