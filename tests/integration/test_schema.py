"""`lablink db init-sql` and `lablink db upgrade` give the same schema, without losing data."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from lablink_core.config import DatabaseConfig
from lablink_core.db import current_revision, make_engine, upgrade
from lablink_core.localdb import find_bin_dir
from lablink_core.models import build_models
from lablink_core.schema import HEAD_REVISION, init_sql


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", _libpq(url)],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _schema_dump(url: str) -> str:
    result = subprocess.run(
        [
            str(find_bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            _libpq(url),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # Comments and pg_dump 18's random \restrict keys differ between any two dumps; some
    # servers also stamp per-column pg_attver options that record when a column was made.
    lines = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith(("--", "\\restrict", "\\unrestrict")) and "(pg_attver=" not in line
    ]
    return "\n".join(lines)


def test_init_sql_loads_and_matches_upgrade(
    postgres_server_url: str, database_factory: Callable[..., str]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    config = DatabaseConfig(dbname=f"lablink_init_{suffix}", user=f"lablink_role_{suffix}")
    sql = init_sql(config)
    for _ in range(2):  # safe to run twice
        result = _psql(postgres_server_url, sql)
        assert result.returncode == 0, result.stderr
    init_url = (
        make_url(postgres_server_url)
        .set(database=config.dbname)
        .render_as_string(hide_password=False)
    )

    upgraded_url = database_factory(migrated=False)
    engine = make_engine(upgraded_url, pool_size=1)
    upgrade(engine, DatabaseConfig())
    init_engine = make_engine(init_url, pool_size=1)
    try:
        assert current_revision(init_engine) == HEAD_REVISION
        upgrade(init_engine, DatabaseConfig())  # already at head: a no-op, not an error
        assert _schema_dump(init_url) == _schema_dump(upgraded_url)
    finally:
        engine.dispose()
        init_engine.dispose()
        admin = make_engine(postgres_server_url, pool_size=1, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {config.dbname} WITH (FORCE)"))
            connection.execute(text(f"DROP ROLE IF EXISTS {config.user}"))
        admin.dispose()


def test_upgrade_keeps_existing_rows(database_url: str, free_vms: Callable[..., list[str]]) -> None:
    names = free_vms(3)
    engine = make_engine(database_url, pool_size=1)
    upgrade(engine, DatabaseConfig())
    with engine.connect() as connection:
        kept = (
            connection.execute(text("SELECT hostname FROM vms ORDER BY hostname")).scalars().all()
        )
    engine.dispose()
    assert kept == names


def test_custom_table_name_and_channel(database_factory: Callable[..., str]) -> None:
    url = database_factory(migrated=False)
    config = DatabaseConfig(table_name="gpu_seats", message_channel="seat_changes")
    engine = make_engine(url, pool_size=1)
    upgrade(engine, config)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO gpu_seats (hostname) VALUES ('vm-x')"))
        events = connection.execute(text("SELECT kind FROM gpu_seats_events")).scalars().all()
    engine.dispose()
    assert events == ["created"]


def test_the_models_describe_the_migrated_schema(engine: Engine) -> None:
    """Every mapped table exists with exactly the mapped columns (the DDL and the typed models
    are written apart; this keeps them in step)."""
    models = build_models("vms")
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        ).all()
    in_database: dict[str, set[str]] = {}
    for row in rows:
        in_database.setdefault(row.table_name, set()).add(row.column_name)
    for name, table in models.metadata.tables.items():
        assert in_database.get(name) == {column.name for column in table.columns}, name


def test_an_upgrade_from_the_first_revision_keeps_the_data(
    database_factory: Callable[..., str],
) -> None:
    url = database_factory(migrated=False)
    engine = make_engine(url, pool_size=1)
    try:
        upgrade(engine, DatabaseConfig(), revision="0001")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO vms (hostname, status, user_email, crd_code, crd_redirect_url, "
                    "pin) VALUES ('vm-old', 'assigned', 'ada@example.org', '4/0Old', "
                    "'https://remotedesktop.google.com/_/oauthredirect', '123456')"
                )
            )
        upgrade(engine, DatabaseConfig())
        assert current_revision(engine) == HEAD_REVISION
        with engine.connect() as connection:
            row = connection.execute(text("SELECT * FROM vms")).mappings().one()
        assert (row["hostname"], row["user_email"], row["pin"]) == (
            "vm-old",
            "ada@example.org",
            "123456",
        )
        assert row["health_state"] == "unknown" and row["credential_hash"] is None
    finally:
        engine.dispose()
