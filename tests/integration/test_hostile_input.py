"""Property test: no request body makes the server answer 500, accept a shell metacharacter,
or store something other than what it validated."""

from __future__ import annotations

import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from lablink_core.crd import parse_crd_command
from lablink_core.credentials import SecretStore, VMCredentials
from lablink_core.enrolment import VMEnrolment
from lablink_core.errors import InvalidInput
from lablink_core.validation import normalize_email
from lablink_core.vms import VMRegistry
from tests.fixtures.server import RunningServer
from tests.integration.test_allocation import CRD
from tests.support.vms import bring_online

METACHARACTERS = [";", "&&", "||", "|", "&", "`", "$(", "${", ">", "<", "\n", "\\", "'", '"', "$"]
CODE_ALPHABET = string.ascii_letters + string.digits + "/_-.~"


def _insert(command: str, piece: str, at: int) -> str:
    at %= len(command) + 1
    return command[:at] + piece + command[at:]


crd_commands = st.one_of(
    st.text(CODE_ALPHABET, min_size=4, max_size=60).map(
        lambda c: CRD.replace("4/0AbCdEf_123-xyz", c)
    ),
    st.builds(_insert, st.just(CRD), st.sampled_from(METACHARACTERS), st.integers(0, 400)),
    st.text(max_size=300),
    st.sampled_from([CRD, CRD + "\n", "  " + CRD + "  ", CRD.replace('"', "'")]),
)
emails = st.one_of(st.emails(), st.text(max_size=80), st.just("ada@example.org"))
bodies = st.fixed_dictionaries(
    {"email": emails, "crd_command": crd_commands},
    optional={"seat_token": st.text(max_size=40), "extra": st.text(max_size=10)},
)


def expected(body: dict[str, str]) -> tuple[str, str] | None:
    """What the server must store for this body: (email, code), or None if it must refuse."""
    try:
        return normalize_email(body["email"]), parse_crd_command(body["crd_command"]).code
    except InvalidInput:
        return None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, as_form=st.booleans())
def test_no_body_causes_a_500_or_stores_unvalidated_values(
    api: RunningServer, body: dict[str, str], as_form: bool
) -> None:
    engine = create_engine(api.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE vms, vms_events"))
        credentials = VMCredentials.from_store(SecretStore(engine))
        bring_online(VMEnrolment(engine, "vms", credentials), VMRegistry(engine, "vms"), "vm-prop")
        send = {"data": body} if as_form else {"json": body}
        reply = httpx.post(
            f"{api.url}/request_vm", timeout=30, headers={"Accept": "application/json"}, **send
        )  # type: ignore[arg-type]
        assert reply.status_code < 500, reply.text
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT user_email, crd_code FROM vms WHERE user_email IS NOT NULL")
            ).all()
    finally:
        engine.dispose()
    if reply.status_code != 200:
        assert stored == [] and reply.json()["error"]["message"]
        return
    assert [tuple(row) for row in stored] == [expected(body)]
    assert not any(m in stored[0].crd_code for m in METACHARACTERS)
