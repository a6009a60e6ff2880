"""Engines, database creation and schema upgrades. The caller owns engines and sessions."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from lablink_core.config import DatabaseConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str | URL, *, pool_size: int = 10, **kwargs: object) -> Engine:
    """An engine for the allocator: pre-ping survives server restarts, short connect timeout."""
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5, "application_name": "lablink"},
        **kwargs,
    )


def ensure_database(url: str | URL) -> bool:
    """Create the database named in ``url`` if it is missing. Returns True if it was created."""
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            ).scalar()
            if exists:
                return False
            quoted = connection.dialect.identifier_preparer.quote(str(target.database))
            connection.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()


def _alembic_config(engine: Engine, db: DatabaseConfig) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["table_name"] = db.table_name
    config.attributes["channel"] = db.message_channel
    return config


def upgrade(engine: Engine, db: DatabaseConfig, revision: str = "head") -> None:
    """Create the schema, or bring an existing one up to ``revision``, keeping its data."""
    config = _alembic_config(engine, db)
    with engine.begin() as connection:
        # Two processes upgrading at once must not both create the tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('lablink-upgrade'))"))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stamped in the database, or None for an empty database."""
    with engine.connect() as connection:
        has_table = connection.execute(
            text("SELECT to_regclass('alembic_version') IS NOT NULL")
        ).scalar()
        if not has_table:
            return None
        value = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(value) if value is not None else None
