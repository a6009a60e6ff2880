"""POST /request_vm and POST /release_vm: what a researcher's browser or script calls.

When no VM is free, a request that asks to wait (``wait=1``) joins the queue: 202 with a
ticket and a place. The ticket is also the seat token of the VM it brings (see
:mod:`dashboard.api.waitlist` for following it)."""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass

from dashboard.api.base import ApiHandler
from dashboard.signin import signed_in_email
from lablink_core.allocation import Assignment
from lablink_core.errors import InvalidInput, LablinkError, NotFound, NoVMAvailable
from lablink_core.validation import normalize_email
from lablink_core.waitlist import Ticket

SEAT_COOKIE = "lablink_seat"
_SEAT_COOKIE_DAYS = 7


def _wants_to_wait(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("1", "true", "yes"))


def _text_field(fields: dict[str, object], name: str, *, required: bool = True) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text", field=name)
    return value


@dataclass(frozen=True)
class _Ask:
    """What one /request_vm asks for."""

    email: str | None
    command: str | None
    seat_token: str | None
    event_code: object
    signed_in: str | None
    wait: bool


class RequestVMHandler(ApiHandler):
    """Assign a VM (or renew the CRD command of the one this seat holds)."""

    def signed_in_email(self) -> str | None:
        """The researcher's verified email, in the 'signin' access mode (OpenID Connect)."""
        return signed_in_email(self.get_cookie, self.application.settings.get("cookie_secret"))

    async def post(self) -> None:
        fields = self.body_fields()
        token = _text_field(fields, "seat_token", required=False) or self.get_cookie(SEAT_COOKIE)
        command = _text_field(fields, "crd_command")
        signed_in = self.signed_in_email()
        given = _text_field(fields, "email", required=not signed_in)
        self.runtime.limits.check(self.client_address(), given)
        wait = _wants_to_wait(fields.get("wait")) or _wants_to_wait(
            self.get_query_argument("wait", "")
        )
        ask = _Ask(given, command, token, fields.get("event_code"), signed_in, wait)
        email, assignment = await self._on_the_loop(ask) or await self.run_sync(
            self._admit_and_assign, ask
        )
        if assignment is None:
            await self._queue(email, command, token)
            return
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
        self._remember_seat(assignment.seat_token)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(_assignment_html(assignment))

    async def _on_the_loop(self, ask: _Ask) -> tuple[str, Assignment | None] | None:
        """The common case (a first claim, the access rule known without a read) on the
        event loop's own connections; None when it needs the request pool instead."""
        runtime = self.runtime
        rule = runtime.services.access.cached_rule()
        if runtime.claims is None or ask.seat_token or rule is None:
            return None
        email = runtime.services.access.admit(
            ask.email, event_code=ask.event_code, signed_in=ask.signed_in, rule=rule
        )
        try:
            return email, await runtime.claims.request_vm(email, ask.command)
        except NoVMAvailable:
            if not self._will_queue(ask):
                raise
            return email, None

    def _will_queue(self, ask: _Ask) -> bool:
        """Whether a request that found no free VM joins the queue instead of a 503."""
        return ask.wait and self.runtime.config.waitlist.enabled

    def _admit_and_assign(self, ask: _Ask) -> tuple[str, Assignment | None]:
        """On the request pool, both steps in one trip (the hop costs more than the check):
        the email (proven by the seat token for a renewal, else by the access rule), then its
        VM; None instead when none is free and the researcher will queue."""
        services = self.runtime.services
        if ask.seat_token:
            email = normalize_email(ask.email)
        else:
            email = services.access.admit(
                ask.email, event_code=ask.event_code, signed_in=ask.signed_in
            )
        try:
            return email, services.allocator.request_vm(email, ask.command, ask.seat_token)
        except NoVMAvailable:
            if not self._will_queue(ask):
                raise
            return email, None

    async def _queue(self, email: str, command: str | None, token: str | None) -> None:
        """Join the queue (or, for a ticket already in it, say where it stands): 202."""
        waitlist = self.runtime.services.waitlist
        if token:
            try:
                place = await self.run_sync(waitlist.status, token)
            except LablinkError:
                place = None
            if place is not None and place.state == "waiting" and place.email == email:
                self._queued(token, place)
                return
        ticket, place = await self.run_sync(waitlist.join, email, command)
        self._queued(ticket, place)

    def _queued(self, ticket: str, place: Ticket) -> None:
        self._remember_seat(ticket)
        body = {**place.as_json(), "ticket": ticket, "poll": f"/api/waitlist/{ticket}"}
        self.write_json(body, 202)

    def _remember_seat(self, seat_token: str) -> None:
        self.set_cookie(
            SEAT_COOKIE,
            seat_token,
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
        self.runtime.limits.check(self.client_address(), email)
        token = _text_field(fields, "seat_token", required=False) or self.get_cookie(SEAT_COOKIE)
        if not token:
            raise InvalidInput("seat_token is required", field="seat_token")
        hostname = await self.run_sync(self.runtime.services.allocator.release, email, token)
        self.clear_cookie(SEAT_COOKIE, path="/")
        self.write_json({"released": hostname})


class ExtendVMHandler(ApiHandler):
    """POST /extend_vm: one more stretch of the session (email + seat token), while the
    researcher has extensions left; answers when the session now ends and why."""

    async def post(self) -> None:
        fields = self.body_fields()
        email = _text_field(fields, "email")
        token = _text_field(fields, "seat_token", required=False) or self.get_cookie(SEAT_COOKIE)
        services = self.runtime.services
        hostname = await self.run_sync(services.allocator.seat, email, token or "")
        if hostname is None:
            raise NotFound("This email and seat token hold no VM.", field="seat_token")
        now = dt.datetime.now(dt.UTC)
        plan = await self.run_sync(services.sessions.extend, hostname, now)
        self.write_json({"hostname": hostname, "ends": plan.as_json() if plan else None})
