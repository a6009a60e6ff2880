"""Alembic environment: the caller passes an open connection and the table settings."""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations(
        table_name=config.attributes["table_name"],
        channel=config.attributes["channel"],
    )
