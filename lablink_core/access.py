"""Who may take a VM: the workshop's access rule, checked on every request for a VM (and on
every place in the queue).

- ``open``: anyone who can reach the page;
- ``code``: the event code the instructor announces (case-insensitive; changeable any time);
- ``allowlist``: listed emails (``ada@uni.edu``) and whole domains (``@uni.edu``);
- ``signin``: the email comes from an OpenID Connect sign-in, verified by the provider; the
  form's email is not believed.

The configuration gives the starting rule; an admin changes it on the dashboard, stored in
``lablink_settings`` for every process. Renewing or releasing a seat needs no check: the
seat token proves it.
"""

from __future__ import annotations

import csv
import hmac
import io
from dataclasses import dataclass
from typing import Any

from lablink_core.config import ACCESS_MODES, AccessConfig
from lablink_core.errors import Forbidden, InvalidInput
from lablink_core.settings import SettingsStore
from lablink_core.validation import normalize_email

MAX_ALLOWLIST = 20000


@dataclass(frozen=True)
class AccessRule:
    """The rule in force."""

    mode: str
    event_code: str | None
    allowlist: tuple[str, ...]

    def admits(self, email: str) -> bool:
        """Whether ``email`` (normalized) is on the allowlist, itself or by its domain."""
        domain = "@" + email.rsplit("@", 1)[-1]
        return email in self.allowlist or domain in self.allowlist


def parse_allowlist(text: str) -> list[str]:
    """Emails and ``@domain`` entries from pasted text or a CSV file (any column; blank
    lines, a header row and duplicates ignored). Refuses an entry that is neither."""
    entries: list[str] = []
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            value = cell.strip().lower()
            if not value or value in ("email", "emails", "domain", "address"):
                continue
            if value.startswith("@"):
                normalize_email("x" + value)  # a valid domain
            else:
                value = normalize_email(value)
            if value not in entries:
                entries.append(value)
    if len(entries) > MAX_ALLOWLIST:
        raise InvalidInput(f"the list may hold at most {MAX_ALLOWLIST} entries", field="allowlist")
    return entries


class AccessPolicy:
    """The rule in force (configuration, overridden by the admin's settings) and its check."""

    def __init__(self, config: AccessConfig, settings: SettingsStore) -> None:
        self._config = config
        self._settings = settings

    def rule(self) -> AccessRule:
        return self._rule_from(self._settings.all())

    def cached_rule(self) -> AccessRule | None:
        """The rule in force if it is known without a database read, else None."""
        stored = self._settings.cached()
        return None if stored is None else self._rule_from(stored)

    def _rule_from(self, stored: dict[str, Any]) -> AccessRule:
        mode = stored.get("access.mode", self._config.mode)
        code = stored.get("access.event_code", self._config.event_code)
        allowlist = stored.get("access.allowlist", list(self._config.allowlist))
        return AccessRule(str(mode), code or None, tuple(str(e).lower() for e in allowlist))

    def admit(
        self,
        email: object,
        *,
        event_code: object = None,
        signed_in: str | None = None,
        rule: AccessRule | None = None,
    ) -> str:
        """The email a request for a VM may use, or Forbidden saying why not (by ``rule``,
        else the rule in force)."""
        rule = rule or self.rule()
        if rule.mode == "signin":
            if signed_in is None:
                raise Forbidden("Sign in first: this workshop gives VMs to signed-in people.")
            return normalize_email(signed_in)
        address = normalize_email(email)
        if rule.mode == "code":
            given = event_code.strip().lower() if isinstance(event_code, str) else ""
            expected = (rule.event_code or "").strip().lower()
            if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
                raise Forbidden(
                    "This workshop needs the event code your instructor announced.",
                    field="event_code",
                )
        if rule.mode == "allowlist" and not rule.admits(address):
            raise Forbidden(
                f"{address} is not on this workshop's list; ask your instructor.", field="email"
            )
        return address

    def change(
        self,
        *,
        mode: str | None = None,
        event_code: str | None = None,
        allowlist: list[str] | None = None,
        by: str | None = None,
    ) -> AccessRule:
        """An admin changes the rule (only what is given); refused if it would not work."""
        current = self.rule()
        new_mode = mode if mode is not None else current.mode
        if new_mode not in ACCESS_MODES:
            raise InvalidInput(f"mode must be one of {', '.join(ACCESS_MODES)}", field="mode")
        code = (event_code if event_code is not None else current.event_code) or ""
        if new_mode == "code" and not code.strip():
            raise InvalidInput("set an event code for the 'code' mode", field="event_code")
        if new_mode == "signin" and not (self._config.oidc_issuer and self._config.oidc_client_id):
            raise InvalidInput(
                "the 'signin' mode needs access.oidc_issuer and access.oidc_client_id in the "
                "configuration",
                field="mode",
            )
        if event_code is not None:
            self._settings.set("access.event_code", event_code.strip(), by=by)
        if allowlist is not None:
            self._settings.set("access.allowlist", allowlist, by=by)
        self._settings.set("access.mode", new_mode, by=by)
        return self.rule()
