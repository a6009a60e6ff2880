"""Setting up the VM table for a run, and auditing what the database says afterwards.

The benchmarks use the default configuration, so the table is ``vms`` and its history
``vms_events`` (written by the trigger, one ``assigned`` row per assignment).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, text

CRD_TEMPLATE = (
    'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="{code}" '
    '--redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)'
)


def crd_command(index: int) -> str:
    """A valid CRD command whose code names the researcher, so a VM can tell whose it got."""
    return CRD_TEMPLATE.format(code=crd_code(index))


def crd_code(index: int) -> str:
    return f"4/0Bench_{index:06d}"


def email(index: int, prefix: str = "r") -> str:
    return f"{prefix}{index:06d}@bench.example.org"


def hostnames(count: int, prefix: str = "bench-vm") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


def reset_free_vms(engine: Engine, count: int, prefix: str = "bench-vm") -> list[str]:
    """Empty the table and its history, then register ``count`` free VMs in one statement."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE vms, vms_events"))
        connection.execute(
            text(
                """
                INSERT INTO vms (hostname, status, provider, registered_at, ready_at,
                                 last_heard_at, credential_hash)
                SELECT :prefix || '-' || lpad(i::text, 5, '0'), 'available', 'bench',
                       now() + i * interval '1 microsecond', now(),
                       now() + i * interval '1 microsecond', 'bench: never polls'
                FROM generate_series(0, :count - 1) AS i
                """
            ),
            {"prefix": prefix, "count": count},
        )
    with engine.begin() as connection:
        connection.execute(text("ANALYZE vms"))
    return hostnames(count, prefix)


@dataclass
class Audit:
    """What the database says about the assignments clients were told about."""

    told: int = 0
    correct: int = 0
    vm_assigned_twice: int = 0
    email_with_two_vms: int = 0
    wrong_holder: int = 0

    @property
    def doubles(self) -> int:
        return self.vm_assigned_twice + self.email_with_two_vms + self.wrong_holder

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "doubles": self.doubles}


def audit(engine: Engine, told: Iterable[tuple[str, str]]) -> Audit:
    """Compare ``(email, hostname)`` pairs that clients were told with the database.

    Doubles: a VM assigned more than once (in the history, or told to two clients), an email
    holding or told of two VMs, a told hostname whose row names another email (or nobody).
    """
    pairs = list(told)
    with engine.connect() as connection:
        holders = {
            str(row.hostname): str(row.user_email)
            for row in connection.execute(
                text("SELECT hostname, user_email FROM vms WHERE user_email IS NOT NULL")
            )
        }
        twice_in_history = {
            str(row.hostname)
            for row in connection.execute(
                text(
                    "SELECT hostname FROM vms_events WHERE kind = 'assigned' "
                    "GROUP BY hostname HAVING count(*) > 1"
                )
            )
        }
    told_per_host = Counter(host for _, host in pairs)
    hosts_per_email: dict[str, set[str]] = defaultdict(set)
    for address, host in pairs:
        hosts_per_email[address].add(host)
    emails_per_holder = Counter(holders.values())
    twice = twice_in_history | {h for h, n in told_per_host.items() if n > 1}
    two_vms = {e for e, hosts in hosts_per_email.items() if len(hosts) > 1}
    two_vms |= {e for e, n in emails_per_holder.items() if n > 1}
    wrong = sum(1 for address, host in pairs if holders.get(host) != address)
    return Audit(
        told=len(pairs),
        correct=len(pairs) - wrong,
        vm_assigned_twice=len(twice),
        email_with_two_vms=len(two_vms),
        wrong_holder=wrong,
    )
