"""Revision 0003: a rotation survives a lost answer.

When a released VM's credential rotates, the previous one's hash is kept until the VM has
used the new one (``previous_credential_hash``). A poll with the previous credential is
answered with the new credential only, never with a task; and the VM is not assignable until
it has acknowledged the rotation, so nothing meant for the next researcher is ever answered
to the previous credential. The claim's index gains that condition.
"""

from __future__ import annotations

_PREVIOUS = """
ALTER TABLE {table}
    ADD COLUMN IF NOT EXISTS previous_credential_hash TEXT
"""

_ASSIGNABLE_INDEX = """
CREATE INDEX ix_{table}_assignable ON {table} (waiting DESC, last_heard_at DESC)
    WHERE status = 'available' AND user_email IS NULL AND health_state <> 'unhealthy'
        AND credential_hash IS NOT NULL AND healing IS NULL
        AND previous_credential_hash IS NULL
"""


def statements(table: str, channel: str) -> list[str]:
    """Revision 0003's statements for VM table ``table`` (``channel`` is unused)."""
    parts = [_PREVIOUS, "DROP INDEX IF EXISTS ix_{table}_assignable", _ASSIGNABLE_INDEX]
    return [part.strip().format(table=table) for part in parts]
