"""Unit tests for lablink_core.validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lablink_core.errors import InvalidInput, LablinkError
from lablink_core.validation import normalize_email, validate_hostname, validate_pin


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("alice@example.org", "alice@example.org"),
        ("  Alice@Example.ORG \n", "alice@example.org"),
        ("first.last@lab.uni.edu", "first.last@lab.uni.edu"),
        ("a+tag@sub-domain.example.com", "a+tag@sub-domain.example.com"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("x!#%&'*+/=?^_{|}~-y@example.org", "x!#%&'*+/=?^_{|}~-y@example.org"),
        ("1@2.io", "1@2.io"),
        ("a" * 64 + "@example.org", "a" * 64 + "@example.org"),
        ("u@" + "d" * 63 + ".org", "u@" + "d" * 63 + ".org"),
    ],
)
def test_valid_emails(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (None, "required"),
        ("", "required"),
        ("   ", "required"),
        (123, "text"),
        (b"a@example.org", "text"),
        ("alice", "exactly one @"),
        ("a@b@example.org", "exactly one @"),
        ("@example.org", "before @"),
        ("alice@", "domain"),
        ("a" * 65 + "@example.org", "longer than 64"),
        ("a@" + "b" * 250 + ".org", "longer than 254"),
        (".alice@example.org", "dot"),
        ("alice.@example.org", "dot"),
        ("al..ice@example.org", "dot"),
        ("al ice@example.org", "spaces"),
        ("alice@exa\tmple.org", "spaces"),
        ("alice\x00@example.org", "control"),
        ('"alice"@example.org', "not allowed"),
        ("al(ice)@example.org", "not allowed"),
        ("alice@localhost", "must contain a dot"),
        ("alice@example..org", "empty part"),
        ("alice@.example.org", "empty part"),
        ("alice@example.org.", "empty part"),
        ("alice@-example.org", "-example"),
        ("alice@example-.org", "example-"),
        ("alice@exa_mple.org", "exa_mple"),
        ("alice@example.o", "top-level"),
        ("alice@example.123", "top-level"),
        ("alice@" + "d" * 64 + ".org", "not valid"),
        ("alicé@example.org", "ASCII"),
        ("alice@example.\u212aom", "ASCII"),
    ],
)
def test_invalid_emails(raw: object, word: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_email(raw)
    assert info.value.field == "email"
    assert word in info.value.message


@given(
    st.one_of(
        st.text(),
        st.from_regex(r"[^@]*@[^@]*", fullmatch=True),
        st.integers(),
        st.none(),
        st.binary(),
    )
)
@settings(max_examples=500)
def test_normalize_email_only_raises_invalid_input(value: object) -> None:
    try:
        result = normalize_email(value)
    except InvalidInput as exc:
        assert exc.field == "email"
    else:
        assert result == result.strip().lower()
        assert normalize_email(result) == result


label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(
    st.from_regex(r"[A-Za-z0-9+_-]{1,20}(\.[A-Za-z0-9+_-]{1,20}){0,2}", fullmatch=True),
    st.lists(label, min_size=1, max_size=3),
    st.from_regex(r"[A-Za-z]{2,6}", fullmatch=True),
)
def test_generated_valid_emails_are_accepted(local: str, labels: list[str], tld: str) -> None:
    email = f"{local}@{'.'.join([*labels, tld])}"
    assert normalize_email(email) == email.lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("vm-01", "vm-01"),
        ("LabLink-VM-7", "lablink-vm-7"),
        ("ip-10-0-0-12.ec2.internal", "ip-10-0-0-12.ec2.internal"),
        ("a", "a"),
        ("0", "0"),
        ("x" * 63, "x" * 63),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),
    ],
)
def test_valid_hostnames(raw: str, expected: str) -> None:
    assert validate_hostname(raw) == expected


@pytest.mark.parametrize(
    ("raw", "word"),
    [
        (None, "required"),
        ("", "required"),
        (7, "text"),
        ("x" * 64, "longer than 63"),
        (".".join(["a" * 63] * 4) + ".b", "longer than 253"),
        ("-vm", "hyphen"),
        ("vm-", "hyphen"),
        ("vm_01", "hyphen"),
        ("vm..lab", "empty part"),
        (".vm", "empty part"),
        ("vm.", "empty part"),
        ("vm 01", "letters"),
        ("vm\n", "letters"),
        ("vm;reboot", "vm;reboot"),
        ("$(id)", "$(id)"),
        ("vmé", "letters"),
    ],
)
def test_invalid_hostnames(raw: object, word: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_hostname(raw)
    assert info.value.field == "hostname"
    assert word in info.value.message


@given(st.one_of(st.text(), st.integers(), st.none()))
def test_validate_hostname_only_raises_invalid_input(value: object) -> None:
    try:
        result = validate_hostname(value)
    except InvalidInput:
        return
    assert result == result.lower()
    assert set(result) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.")


@pytest.mark.parametrize("pin", ["123456", "000000", "123456789012"])
def test_valid_pins(pin: str) -> None:
    assert validate_pin(pin) == pin


@pytest.mark.parametrize(
    "pin", ["", "12345", "1234567890123", "12345a", " 123456", "123456\n", "١٢٣٤٥٦", "12 3456"]
)
def test_invalid_pins(pin: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_pin(pin)
    assert info.value.field == "pin"
    assert pin.strip() == "" or pin.strip() not in info.value.message


def test_error_shape() -> None:
    err = InvalidInput("email is required", field="email")
    assert str(err) == "email is required"
    assert err.message == "email is required"
    assert err.field == "email"
    assert err.code == "invalid_input"
    assert isinstance(err, LablinkError)
    assert LablinkError("x").field is None
