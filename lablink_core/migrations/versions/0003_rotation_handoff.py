"""Keep the previous credential's hash until a rotated VM uses its new one; the assignable
index asks for it (see lablink_core.ddl.v0003).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from lablink_core.ddl import revision_statements

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(*, table_name: str, channel: str) -> None:
    for statement in revision_statements("0003", table_name, channel):
        op.execute(statement)


def downgrade(*, table_name: str, channel: str) -> None:
    raise NotImplementedError("revision 0003 is not reversible: restore a backup instead")
