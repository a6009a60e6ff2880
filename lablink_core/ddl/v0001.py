"""Revision 0001, frozen: the initial schema exactly as it first shipped.

The first migration ran SQLAlchemy's DDL for the models of that time. The models have moved
on since, so that DDL is kept here as text: migration 0001 and ``lablink db init-sql`` must
build the same first revision forever, and later revisions change it from there.
"""

from __future__ import annotations

_TABLES = """
CREATE TABLE IF NOT EXISTS lablink_fleet_operations (
    id SERIAL NOT NULL,
    kind TEXT NOT NULL,
    provider TEXT NOT NULL,
    state TEXT DEFAULT 'running' NOT NULL,
    target INTEGER,
    planned INTEGER DEFAULT '0' NOT NULL,
    done INTEGER DEFAULT '0' NOT NULL,
    log TEXT DEFAULT '' NOT NULL,
    error TEXT,
    started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    ended_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id)
)
--
CREATE TABLE IF NOT EXISTS lablink_local_processes (
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    owner_pid INTEGER NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (hostname)
)
--
CREATE TABLE IF NOT EXISTS lablink_secrets (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (name)
)
--
CREATE TABLE IF NOT EXISTS {table} (
    hostname TEXT NOT NULL,
    status TEXT DEFAULT 'available' NOT NULL,
    user_email TEXT,
    crd_code TEXT,
    crd_redirect_url TEXT,
    pin TEXT,
    seat_token_hash TEXT,
    generation INTEGER DEFAULT '0' NOT NULL,
    in_use BOOLEAN DEFAULT 'false' NOT NULL,
    health TEXT,
    status_message TEXT,
    provider TEXT DEFAULT 'manual' NOT NULL,
    instance_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    registered_at TIMESTAMP WITH TIME ZONE,
    ready_at TIMESTAMP WITH TIME ZONE,
    assigned_at TIMESTAMP WITH TIME ZONE,
    last_heard_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (hostname),
    CONSTRAINT ck_{table}_status CHECK (status IN ('booting', 'available', 'assigned',
        'connected', 'error', 'recycling')),
    CONSTRAINT ck_{table}_holder CHECK ((user_email IS NULL) =
        (status NOT IN ('assigned', 'connected')))
)
--
CREATE INDEX IF NOT EXISTS ix_{table}_free ON {table} (registered_at)
    WHERE status = 'available' AND user_email IS NULL
--
CREATE UNIQUE INDEX IF NOT EXISTS uq_{table}_user_email ON {table} (user_email)
    WHERE user_email IS NOT NULL
--
CREATE TABLE IF NOT EXISTS {table}_events (
    id BIGSERIAL NOT NULL,
    hostname TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT,
    at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id)
)
--
CREATE INDEX IF NOT EXISTS ix_{table}_events_at ON {table}_events (at)
"""

_TRIGGER_FUNCTION = """
CREATE OR REPLACE FUNCTION {table}_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    what text;
    row_hostname text;
    row_generation integer;
BEGIN
    IF TG_OP = 'DELETE' THEN
        what := 'deleted';
        row_hostname := OLD.hostname;
        row_generation := OLD.generation;
    ELSE
        row_hostname := NEW.hostname;
        row_generation := NEW.generation;
        IF TG_OP = 'INSERT' THEN
            what := 'created';
        ELSIF NEW.generation IS DISTINCT FROM OLD.generation THEN
            what := CASE WHEN NEW.user_email IS NULL THEN 'released' ELSE 'assigned' END;
        ELSIF (NEW.status, NEW.in_use, NEW.health, NEW.status_message)
              IS DISTINCT FROM (OLD.status, OLD.in_use, OLD.health, OLD.status_message) THEN
            what := 'status';
        ELSE
            RETURN NEW;
        END IF;
    END IF;
    INSERT INTO {table}_events (hostname, kind, detail)
        VALUES (row_hostname, what, CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.status END);
    PERFORM pg_notify('{channel}', json_build_object(
        'hostname', row_hostname, 'what', what, 'generation', row_generation)::text);
    RETURN COALESCE(NEW, OLD);
END
$$
"""

_TRIGGER = """
CREATE OR REPLACE TRIGGER {table}_notify
    AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {table}_notify()
"""


def statements(table: str, channel: str) -> list[str]:
    """Revision 0001's statements for a VM table ``table`` notifying on ``channel``
    (both already checked identifiers)."""
    tables = [part.strip() for part in _TABLES.split("\n--\n")]
    return [
        *(part.format(table=table) for part in tables),
        _TRIGGER_FUNCTION.strip().format(table=table, channel=channel),
        _TRIGGER.strip().format(table=table),
    ]
