"""Revision 0002: the workshop's day.

* VM credentials issued per VM and stored hashed (revocable, rotated on reuse), one-time
  enrolment tokens, and which client a VM runs;
* what a VM reports about its health and activity, and what the healer is doing to it;
* the assignable-VM index that the claim reads (live, healthy, credentialed, free);
* per-VM action history (healer, reclaim, schedules, admins) and log lines;
* the waitlist, teardown schedules, leases for loops that one process runs at a time,
  settings changed from the dashboard, admin sessions and login throttling.

Every statement is idempotent, as ``lablink db init-sql`` may be run more than once.
"""

from __future__ import annotations

_VM_COLUMNS = """
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS credential_hash TEXT,
    ADD COLUMN IF NOT EXISTS credential_salt TEXT,
    ADD COLUMN IF NOT EXISTS credential_issued_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS enrolment_hash TEXT,
    ADD COLUMN IF NOT EXISTS enrolment_expires_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS client_kind TEXT DEFAULT 'lablink' NOT NULL,
    ADD COLUMN IF NOT EXISTS health_state TEXT DEFAULT 'unknown' NOT NULL,
    ADD COLUMN IF NOT EXISTS waiting BOOLEAN DEFAULT false NOT NULL,
    ADD COLUMN IF NOT EXISTS boot_id TEXT,
    ADD COLUMN IF NOT EXISTS crd_active BOOLEAN,
    ADD COLUMN IF NOT EXISTS gpu_utilization INTEGER,
    ADD COLUMN IF NOT EXISTS disk_free_pct INTEGER,
    ADD COLUMN IF NOT EXISTS last_activity_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS extended_until TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS extensions_used INTEGER DEFAULT 0 NOT NULL,
    ADD COLUMN IF NOT EXISTS heal_attempts INTEGER DEFAULT 0 NOT NULL,
    ADD COLUMN IF NOT EXISTS healing TEXT,
    ADD COLUMN IF NOT EXISTS healing_since TIMESTAMP WITH TIME ZONE,
    ADD COLUMN IF NOT EXISTS status_reason TEXT
"""

_VM_CONSTRAINTS = """
ALTER TABLE {table}
    DROP CONSTRAINT IF EXISTS ck_{table}_health_state,
    ADD CONSTRAINT ck_{table}_health_state
        CHECK (health_state IN ('healthy', 'unhealthy', 'unknown')),
    DROP CONSTRAINT IF EXISTS ck_{table}_client_kind,
    ADD CONSTRAINT ck_{table}_client_kind CHECK (client_kind IN ('lablink', 'original')),
    DROP CONSTRAINT IF EXISTS ck_{table}_healing,
    ADD CONSTRAINT ck_{table}_healing CHECK (healing IN ('rebooting', 'replacing'))
"""

# The claim's index: free, healthy, credentialed rows, VMs waiting now first, then the most
# recently heard. (The claim also asks for "heard recently", which depends on now().)
_ASSIGNABLE_INDEX = """
CREATE INDEX IF NOT EXISTS ix_{table}_assignable ON {table} (waiting DESC, last_heard_at DESC)
    WHERE status = 'available' AND user_email IS NULL AND health_state <> 'unhealthy'
        AND credential_hash IS NOT NULL AND healing IS NULL
"""

_FLEET_OPERATION_COLUMNS = """
ALTER TABLE lablink_fleet_operations
    ADD COLUMN IF NOT EXISTS reason TEXT,
    ADD COLUMN IF NOT EXISTS actor TEXT
"""

_ACTIONS = """
CREATE TABLE IF NOT EXISTS {table}_actions (
    id BIGSERIAL NOT NULL,
    hostname TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    user_email TEXT,
    outcome TEXT,
    detail TEXT,
    at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id)
)
"""

_LOGS = """
CREATE TABLE IF NOT EXISTS {table}_logs (
    id BIGSERIAL NOT NULL,
    hostname TEXT NOT NULL,
    source TEXT NOT NULL,
    line TEXT NOT NULL,
    at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id)
)
"""

_WAITLIST = """
CREATE TABLE IF NOT EXISTS {table}_waitlist (
    id BIGSERIAL NOT NULL,
    email TEXT NOT NULL,
    ticket_hash TEXT NOT NULL,
    crd_code TEXT NOT NULL,
    crd_redirect_url TEXT NOT NULL,
    state TEXT DEFAULT 'waiting' NOT NULL,
    hostname TEXT,
    pin TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_seen_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    ended_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id),
    CONSTRAINT uq_{table}_waitlist_ticket UNIQUE (ticket_hash),
    CONSTRAINT ck_{table}_waitlist_state
        CHECK (state IN ('waiting', 'assigned', 'expired', 'left'))
)
"""

_WAITLIST_FUNCTION = """
CREATE OR REPLACE FUNCTION {table}_waitlist_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    row_id bigint;
    row_state text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        row_id := OLD.id;
        row_state := 'deleted';
    ELSE
        row_id := NEW.id;
        row_state := NEW.state;
    END IF;
    PERFORM pg_notify('{channel}', json_build_object(
        'what', 'waitlist', 'ticket', row_id, 'state', row_state)::text);
    RETURN NULL;
END
$$
"""

_WAITLIST_TRIGGER = """
CREATE OR REPLACE TRIGGER {table}_waitlist_notify
    AFTER INSERT OR DELETE OR UPDATE OF state ON {table}_waitlist
    FOR EACH ROW EXECUTE FUNCTION {table}_waitlist_notify()
"""

_SCHEDULES = """
CREATE TABLE IF NOT EXISTS lablink_schedules (
    id SERIAL NOT NULL,
    action TEXT DEFAULT 'destroy' NOT NULL,
    kind TEXT NOT NULL,
    run_at TIMESTAMP WITH TIME ZONE,
    time_of_day TIME WITHOUT TIME ZONE,
    timezone TEXT DEFAULT 'UTC' NOT NULL,
    next_run_at TIMESTAMP WITH TIME ZONE,
    last_run_at TIMESTAMP WITH TIME ZONE,
    last_outcome TEXT,
    enabled BOOLEAN DEFAULT true NOT NULL,
    created_by TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_lablink_schedules_kind CHECK (kind IN ('once', 'daily')),
    CONSTRAINT ck_lablink_schedules_when CHECK (
        (kind = 'once' AND run_at IS NOT NULL) OR (kind = 'daily' AND time_of_day IS NOT NULL))
)
"""

_LEASES = """
CREATE TABLE IF NOT EXISTS lablink_leases (
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    acquired_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (name)
)
"""

_SETTINGS = """
CREATE TABLE IF NOT EXISTS lablink_settings (
    name TEXT NOT NULL,
    value JSONB NOT NULL,
    updated_by TEXT,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (name)
)
"""

_ADMIN_SESSIONS = """
CREATE TABLE IF NOT EXISTS lablink_admin_sessions (
    id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    address TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_seen_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    revoked_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id)
)
"""

_THROTTLE = """
CREATE TABLE IF NOT EXISTS lablink_throttle (
    key TEXT NOT NULL,
    failures INTEGER DEFAULT 0 NOT NULL,
    window_start TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    blocked_until TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (key)
)
"""

_INDEXES = (
    "DROP INDEX IF EXISTS ix_{table}_free",
    _ASSIGNABLE_INDEX,
    "CREATE INDEX IF NOT EXISTS ix_{table}_actions_hostname ON {table}_actions (hostname, id)",
    "CREATE INDEX IF NOT EXISTS ix_{table}_actions_email ON {table}_actions (user_email, id)"
    " WHERE user_email IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS ix_{table}_logs_hostname ON {table}_logs (hostname, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS uq_{table}_waitlist_email ON {table}_waitlist (email)"
    " WHERE state = 'waiting'",
    "CREATE INDEX IF NOT EXISTS ix_{table}_waitlist_waiting ON {table}_waitlist (id)"
    " WHERE state = 'waiting'",
    "CREATE INDEX IF NOT EXISTS ix_lablink_schedules_next ON lablink_schedules (next_run_at)"
    " WHERE enabled",
)

# What the trigger announces. Compared with 0001: the health and healing columns and the
# stop reason are status changes too, and a credential revoked (or rotated without a new
# assignment) is its own kind, so a VM waiting with the old credential is answered at once.
# Heartbeats, activity samples and the `waiting` flag still notify nobody.
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
        ELSIF NEW.credential_hash IS DISTINCT FROM OLD.credential_hash
              AND NEW.credential_hash IS NULL THEN
            what := 'credential';
        ELSIF (NEW.status, NEW.in_use, NEW.health, NEW.status_message, NEW.health_state,
               NEW.healing, NEW.status_reason, NEW.crd_active)
              IS DISTINCT FROM (OLD.status, OLD.in_use, OLD.health, OLD.status_message,
               OLD.health_state, OLD.healing, OLD.status_reason, OLD.crd_active) THEN
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


def statements(table: str, channel: str) -> list[str]:
    """Revision 0002's statements for VM table ``table`` and NOTIFY channel ``channel``."""
    parts = [
        _VM_COLUMNS,
        _VM_CONSTRAINTS,
        _FLEET_OPERATION_COLUMNS,
        _ACTIONS,
        _LOGS,
        _WAITLIST,
        _SCHEDULES,
        _LEASES,
        _SETTINGS,
        _ADMIN_SESSIONS,
        _THROTTLE,
        *_INDEXES,
        _WAITLIST_FUNCTION,
        _WAITLIST_TRIGGER,
        _TRIGGER_FUNCTION,
    ]
    return [part.strip().format(table=table, channel=channel) for part in parts]
