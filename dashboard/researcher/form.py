"""The researcher form's checks: why an input is refused, and what the form still needs."""

from __future__ import annotations

from collections.abc import Callable

from lablink_core.errors import InvalidInput

MISSING = {
    (True, True): "Enter your email and the Chrome Remote Desktop command to request a VM.",
    (True, False): "Enter your email to request a VM.",
    (False, True): "Paste the Chrome Remote Desktop command to request a VM.",
}


def problem(check: Callable[[str], object], text: str) -> str:
    """The reason ``text`` is refused, or "" when it is fine or still empty."""
    if not text.strip():
        return ""
    try:
        check(text)
    except InvalidInput as error:
        return error.message
    return ""
