"""Bringing VMs online in tests the way a real one comes online: enrolled (a credential is
issued with its row), then registered by a poll presenting that credential."""

from __future__ import annotations

from lablink_core.credentials import token_hash
from lablink_core.enrolment import VMEnrolment
from lablink_core.vms import VMRegistry, VMTask


def bring_online(
    enrolment: VMEnrolment, registry: VMRegistry, hostname: str, *, provider: str = "manual"
) -> str:
    """Enrol ``hostname`` (if needed) and register it as a poll would; returns its credential."""
    credential = enrolment.enrol(hostname, provider=provider)
    poll(registry, hostname, credential)
    return credential


def poll(registry: VMRegistry, hostname: str, credential: str) -> VMTask:
    """What one /vm_startup poll records (the VM is alive and waiting); its task."""
    task = registry.register(hostname, token_hash(credential))
    assert task is not None, f"{hostname}'s credential was refused"
    return task
