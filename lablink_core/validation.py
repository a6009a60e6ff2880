"""Validation of small values that arrive from people or from VMs.

Every function returns the cleaned value or raises `InvalidInput` naming the
field, so callers can show the message next to the right form input.
"""

from __future__ import annotations

import re

from lablink_core.errors import InvalidInput

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
MAX_HOSTNAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

_LOCAL_PART_RE = re.compile(r"[a-z0-9.!#%&'*+/=?^_{|}~-]+")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_TLD_RE = re.compile(r"[a-z]{2,}")
_PIN_RE = re.compile(r"[0-9]{6,12}")


def _has_space_or_control(text: str) -> bool:
    # The same as testing isspace() or not isprintable() on every character (checked over all
    # of Unicode): the space is the only printable whitespace. Two C calls, not a loop.
    return " " in text or not text.isprintable()


def _require_str(value: object, field: str) -> str:
    if value is None:
        raise InvalidInput(f"{field} is required", field=field)
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text, not {type(value).__name__}", field=field)
    if not value:
        raise InvalidInput(f"{field} is required", field=field)
    return value


def _check_local_part(local: str) -> None:
    if not local:
        raise InvalidInput("email is missing the part before @", field="email")
    if len(local) > MAX_LOCAL_PART_LENGTH:
        raise InvalidInput(
            f"email part before @ is longer than {MAX_LOCAL_PART_LENGTH} characters",
            field="email",
        )
    if not _LOCAL_PART_RE.fullmatch(local):
        raise InvalidInput(
            "email part before @ contains a character that is not allowed", field="email"
        )
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidInput(
            "email part before @ must not start or end with a dot or have two dots in a row",
            field="email",
        )


def _check_domain(domain: str) -> None:
    if not domain:
        raise InvalidInput("email is missing the domain after @", field="email")
    labels = domain.split(".")
    if len(labels) < 2:
        raise InvalidInput("email domain must contain a dot, e.g. example.org", field="email")
    for label in labels:
        if not label:
            raise InvalidInput("email domain has an empty part between dots", field="email")
        if len(label) > MAX_LABEL_LENGTH or not _LABEL_RE.fullmatch(label):
            raise InvalidInput(f"email domain part {label!r} is not valid", field="email")
    if not _TLD_RE.fullmatch(labels[-1]):
        raise InvalidInput(
            "email domain must end in a top-level domain of two or more letters", field="email"
        )


def normalize_email(value: object) -> str:
    """Return the email stripped and lowercased, or raise `InvalidInput(field="email")`."""
    text = _require_str(value, "email").strip()
    if not text:
        raise InvalidInput("email is required", field="email")
    if len(text) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"email is longer than {MAX_EMAIL_LENGTH} characters", field="email")
    if _has_space_or_control(text):
        raise InvalidInput("email must not contain spaces or control characters", field="email")
    # Checked before lowercasing: some non-ASCII letters (e.g. the Kelvin sign)
    # lowercase to ASCII, which would let two different inputs become one address.
    if not text.isascii():
        raise InvalidInput("email must contain only ASCII characters", field="email")
    text = text.lower()
    if text.count("@") != 1:
        raise InvalidInput("email must contain exactly one @", field="email")
    local, domain = text.split("@")
    _check_local_part(local)
    _check_domain(domain)
    return text


def validate_hostname(value: object) -> str:
    """Return a VM hostname lowercased, or raise `InvalidInput(field="hostname")`.

    RFC 1123 labels separated by dots; no surrounding whitespace is tolerated
    because the name ends up on a command line.
    """
    text = _require_str(value, "hostname")
    if len(text) > MAX_HOSTNAME_LENGTH:
        raise InvalidInput(
            f"hostname is longer than {MAX_HOSTNAME_LENGTH} characters", field="hostname"
        )
    if not text.isascii() or _has_space_or_control(text):
        raise InvalidInput(
            "hostname must contain only letters, digits, hyphens and dots", field="hostname"
        )
    text = text.lower()
    for label in text.split("."):
        if not label:
            raise InvalidInput("hostname has an empty part between dots", field="hostname")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidInput(
                f"hostname part is longer than {MAX_LABEL_LENGTH} characters", field="hostname"
            )
        if not _LABEL_RE.fullmatch(label):
            raise InvalidInput(
                f"hostname part {label!r} must be letters, digits and hyphens, "
                "not starting or ending with a hyphen",
                field="hostname",
            )
    return text


def validate_pin(value: str) -> str:
    """Return the Chrome Remote Desktop PIN if it is 6-12 ASCII digits.

    The message never echoes the PIN, since it is a secret.
    """
    text = _require_str(value, "pin")
    if not _PIN_RE.fullmatch(text):
        raise InvalidInput("pin must be 6 to 12 digits", field="pin")
    return text
