"""A VM credential's life: issued when a VM is launched or enrolled by hand, exchanged once for
an enrolment token, rotated when the VM is handed on, revoked when it is destroyed.

The row is the only record: its salt stands for the current credential (see
:mod:`lablink_core.credentials`), so revoking is clearing it, and deleting the row (destroy)
revokes too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text

from lablink_core.credentials import VMCredentials, new_enrolment_token, token_hash
from lablink_core.db import reconnecting
from lablink_core.errors import NotFound, Unauthorized
from lablink_core.models import checked_identifier
from lablink_core.validation import validate_hostname

ENROLMENT_TTL = dt.timedelta(days=2)


class VMEnrolment:
    """Issues, rotates, exchanges and revokes VM credentials in the VM table."""

    def __init__(self, engine: Engine, table_name: str, credentials: VMCredentials) -> None:
        self._engine = engine
        self._table = checked_identifier(table_name)
        self.credentials = credentials

    def _store(self, connection: Connection, hostname: str) -> str:
        issued = self.credentials.issue(hostname)
        connection.execute(
            text(
                f"UPDATE {self._table} SET credential_salt = :salt, "
                "credential_hash = :hash, credential_issued_at = now(), "
                "previous_credential_hash = NULL, "
                "enrolment_hash = NULL, enrolment_expires_at = NULL WHERE hostname = :hostname"
            ),
            {"salt": issued.salt, "hash": issued.hash, "hostname": hostname},
        )
        return issued.credential

    @reconnecting
    def enrol(self, hostname: object, *, provider: str = "manual", fresh: bool = False) -> str:
        """The current credential of ``hostname``, issuing one (and the VM's row, "booting")
        when it has none, or always with ``fresh`` (the old one then stops working): how an
        admin enrols a machine by hand, and how the local fleet hands each VM process its
        credential."""
        name = validate_hostname(hostname)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO {self._table} (hostname, status, provider) "
                    "VALUES (:hostname, 'booting', :provider) ON CONFLICT (hostname) DO NOTHING"
                ),
                {"hostname": name, "provider": provider},
            )
            salt = connection.execute(
                text(f"SELECT credential_salt FROM {self._table} WHERE hostname = :h FOR UPDATE"),
                {"h": name},
            ).scalar_one()
            if salt is not None and not fresh:
                return self.credentials.derive(name, str(salt))
            return self._store(connection, name)

    @reconnecting
    def enrol_many(self, hostnames: Sequence[str], *, provider: str = "manual") -> dict[str, str]:
        """:meth:`enrol` for many VMs in one transaction (benchmarks, bulk enrolment)."""
        names = [validate_hostname(h) for h in hostnames]
        if not names:
            return {}
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"INSERT INTO {self._table} (hostname, status, provider) "
                    "VALUES (:hostname, 'booting', :provider) ON CONFLICT (hostname) DO NOTHING"
                ),
                [{"hostname": n, "provider": provider} for n in names],
            )
            salts: dict[str, str | None] = dict(
                connection.execute(
                    text(
                        f"SELECT hostname, credential_salt FROM {self._table} "
                        "WHERE hostname = ANY(:names) FOR UPDATE"
                    ),
                    {"names": names},
                ).all()
            )
            fresh = {n: self.credentials.issue(n) for n in names if salts.get(n) is None}
            if fresh:
                connection.execute(
                    text(
                        f"UPDATE {self._table} SET credential_salt = :salt, "
                        "credential_hash = :hash, credential_issued_at = now() "
                        "WHERE hostname = :hostname"
                    ),
                    [{"salt": i.salt, "hash": i.hash, "hostname": n} for n, i in fresh.items()],
                )
        return {
            n: fresh[n].credential if n in fresh else self.credentials.derive(n, str(salts[n]))
            for n in names
        }

    @reconnecting
    def rotate(self, hostname: object) -> str:
        """A new credential for an existing VM; the old one stops working at once."""
        name = validate_hostname(hostname)
        with self._engine.begin() as connection:
            if not self._exists(connection, name):
                raise NotFound(f"No VM named {name}.", field="hostname")
            return self._store(connection, name)

    @reconnecting
    def current(self, hostnames: Sequence[str]) -> dict[str, str]:
        """The current credential of each of these VMs that has one."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    f"SELECT hostname, credential_salt FROM {self._table} "
                    "WHERE hostname = ANY(:names) AND credential_salt IS NOT NULL"
                ),
                {"names": list(hostnames)},
            ).all()
        return {r.hostname: self.credentials.derive(r.hostname, r.credential_salt) for r in rows}

    @reconnecting
    def issue_enrolment(
        self, hostnames: Sequence[str], ttl: dt.timedelta = ENROLMENT_TTL
    ) -> dict[str, str]:
        """One-time enrolment tokens for VMs whose rows exist (a launch adds them first).
        A VM's current credential, if any, is revoked: the token is its way to a new one."""
        tokens = {validate_hostname(h): new_enrolment_token() for h in hostnames}
        rows = [{"hostname": h, "hash": token_hash(t)} for h, t in tokens.items()]
        if not rows:
            return {}
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    f"UPDATE {self._table} SET enrolment_hash = :hash, "
                    "enrolment_expires_at = now() + make_interval(secs => :ttl), "
                    "credential_salt = NULL, credential_hash = NULL, "
                    "previous_credential_hash = NULL WHERE hostname = :hostname"
                ),
                [{**row, "ttl": ttl.total_seconds()} for row in rows],
            )
        return tokens

    @reconnecting
    def exchange(self, hostname: object, token: object) -> str:
        """A VM's first call: its enrolment token (used up here) for its credential."""
        name = validate_hostname(hostname)
        if not isinstance(token, str) or not token or len(token) > 200:
            raise Unauthorized("missing or malformed enrolment token")
        with self._engine.begin() as connection:
            found = connection.execute(
                text(
                    f"SELECT hostname FROM {self._table} WHERE hostname = :h "
                    "AND enrolment_hash = :hash AND enrolment_expires_at > now() FOR UPDATE"
                ),
                {"h": name, "hash": token_hash(token)},
            ).first()
            if found is None:
                raise Unauthorized(f"enrolment token for {name} is wrong, used or expired")
            return self._store(connection, name)

    @reconnecting
    def revoke(self, hostname: object) -> bool:
        """No credential or enrolment token of this VM works any more. False if unknown."""
        name = validate_hostname(hostname)
        with self._engine.begin() as connection:
            result = connection.execute(
                text(
                    f"UPDATE {self._table} SET credential_salt = NULL, credential_hash = NULL, "
                    "previous_credential_hash = NULL, "
                    "enrolment_hash = NULL, enrolment_expires_at = NULL "
                    "WHERE hostname = :hostname"
                ),
                {"hostname": name},
            )
        return result.rowcount == 1

    def _exists(self, connection: Connection, hostname: str) -> bool:
        row = connection.execute(
            text(f"SELECT 1 FROM {self._table} WHERE hostname = :h FOR UPDATE"), {"h": hostname}
        ).first()
        return row is not None
