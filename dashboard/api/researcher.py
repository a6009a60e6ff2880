"""POST /request_vm and POST /release_vm: what a researcher's browser or script calls."""

from __future__ import annotations

import html

from dashboard.api.base import ApiHandler
from lablink_core.allocation import Assignment
from lablink_core.errors import InvalidInput
from lablink_core.validation import normalize_email

SEAT_COOKIE = "lablink_seat"
_SEAT_COOKIE_DAYS = 7


def _text_field(fields: dict[str, object], name: str, *, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", field=name)
    return value


class RequestVMHandler(ApiHandler):
    """Assign a VM (or renew the CRD command of the one this seat holds)."""

    async def post(self) -> None:
        fields = self.body_fields()
        email = normalize_email(_text_field(fields, "email"))
        command = _text_field(fields, "crd_command")
        token = _text_field(fields, "seat_token", required=False) or self.get_cookie(SEAT_COOKIE)
        allocator = self.runtime.services.allocator
        assignment = await self.run_sync(allocator.request_vm, email, command, token)
        if self.wants_json():  # scripts keep the token from the body; browsers get a cookie
            self.write_json(
                {
                    "hostname": assignment.hostname,
                    "pin": assignment.pin,
                    "seat_token": assignment.seat_token,
                    "email": assignment.email,
                    "renewed": assignment.renewed,
                }
            )
            return
        self._remember_seat(assignment)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_assignment_html(assignment))

    def _remember_seat(self, assignment: Assignment) -> None:
        self.set_cookie(
            SEAT_COOKIE,
            assignment.seat_token,
            expires_days=_SEAT_COOKIE_DAYS,
            httponly=True,
            samesite="Lax",
            path="/",
        )


def _assignment_html(assignment: Assignment) -> str:
    host, pin = html.escape(assignment.hostname), html.escape(assignment.pin)
    return (
        "<!doctype html><title>LabLink: your VM</title>"
        f"<p>Your VM is <b>{host}</b>. Its PIN is <b>{pin}</b>.</p>"
        "<p>Open https://remotedesktop.google.com/access, choose this VM and enter the PIN.</p>\n"
    )


class ReleaseVMHandler(ApiHandler):
    """The researcher gives their VM back (email + seat token)."""

    async def post(self) -> None:
        fields = self.body_fields()
        email = _text_field(fields, "email")
        token = _text_field(fields, "seat_token", required=False) or self.get_cookie(SEAT_COOKIE)
        if not token:
            raise InvalidInput("seat_token is required", field="seat_token")
        hostname = await self.run_sync(self.runtime.services.allocator.release, email, token)
        self.clear_cookie(SEAT_COOKIE, path="/")
        self.write_json({"released": hostname})
