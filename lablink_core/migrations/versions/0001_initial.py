"""Initial schema: VM table with its NOTIFY trigger, events, secrets, fleet operations.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from lablink_core.schema import create_statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(*, table_name: str, channel: str) -> None:
    for statement in create_statements(table_name, channel):
        op.execute(statement)


def downgrade(*, table_name: str, channel: str) -> None:
    op.execute(f"DROP TABLE IF EXISTS {table_name}, {table_name}_events CASCADE")
    op.execute(f"DROP FUNCTION IF EXISTS {table_name}_notify()")
    op.execute("DROP TABLE IF EXISTS lablink_secrets, lablink_fleet_operations CASCADE")
    op.execute("DROP TABLE IF EXISTS lablink_local_processes CASCADE")
