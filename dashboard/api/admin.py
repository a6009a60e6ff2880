"""Health and admin endpoints: GET /api/health, GET /api/vms, POST /api/vms/{host}/release."""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from urllib.parse import urlsplit

from sqlalchemy import text

from dashboard.api.base import ApiError, ApiHandler
from dashboard.auth import SESSION_COOKIE, admin_from_cookie
from dashboard.login import attempt_admin_login, retry_after_header
from lablink_core.errors import NotFound, Unauthorized


class HealthHandler(ApiHandler):
    """200 when this process and its database answer, 503 otherwise."""

    uses_admin_pool = True

    async def get(self) -> None:
        runtime = self.runtime
        detail = {"listener": runtime.listener.connected, "waiting_vms": runtime.waiters.count}
        try:
            pool = await self.run_sync(runtime.services.allocator.pool_counts)
        except Exception as error:  # any database failure means "unhealthy", not a crash
            detail.update(database=False, reason=type(error).__name__)
            self.write_json({"ok": False, **detail}, 503)
            return
        self.write_json(
            {
                "ok": True,
                "database": True,
                "free_vms": pool["free"],
                # Free but not heard from lately: out of the pool until they speak again.
                "silent_vms": pool["silent"],
                "unhealthy_vms": pool["unhealthy"],
                **detail,
            }
        )


class AdminApiHandler(ApiHandler):
    """Admin-only: HTTP Basic with the admin login (throttled like the login form), the admin
    API token as a bearer, or a live admin session's cookie (writes with the cookie must come
    from this site's pages)."""

    async def prepare(self) -> None:
        # The token's hash and the session may need a query: off the event loop, on the
        # admin threads (a flood of VM requests cannot delay an admin's check).
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(self.runtime.admin_executor, self._token_or_cookie):
            return
        user, password = self._basic_credentials()
        if user is not None:
            outcome = await attempt_admin_login(self.runtime, self.request, user, password)
            if outcome.ok:
                return
            if outcome.retry_after is not None:
                self.set_header("Retry-After", retry_after_header(outcome.retry_after))
                raise ApiError(429, "too_many_attempts", "too many failed logins; retry later")
        self.set_header("WWW-Authenticate", 'Basic realm="lablink-admin"')
        raise Unauthorized("admin login required")

    def _token_or_cookie(self) -> bool:
        return self.runtime.admin.check_token(self.bearer_token()) or self._logged_in_by_cookie()

    def _logged_in_by_cookie(self) -> bool:
        secret = self.application.settings.get("cookie_secret")
        if admin_from_cookie(self.runtime, self.get_cookie(SESSION_COOKIE), secret) is None:
            return False
        return self.request.method in ("GET", "HEAD") or self._same_origin()

    def _same_origin(self) -> bool:
        """A cookie rides along on cross-site requests too: a write needs Origin or Referer
        naming this host."""
        source = self.request.headers.get("Origin") or self.request.headers.get("Referer")
        return bool(source) and urlsplit(source).netloc == self.request.host

    def _basic_credentials(self) -> tuple[str | None, str]:
        scheme, _, encoded = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None, ""
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, ""
        return user, password


class VMListHandler(AdminApiHandler):
    """The instance table as JSON, each VM with its latest action (what and why)."""

    async def get(self) -> None:
        services = self.runtime.services
        silence = self.runtime.config.app.unresponsive_after_seconds

        def read() -> list[dict[str, object]]:
            rows = services.registry.list(unresponsive_after=silence)
            latest = services.actions.latest_by_vm([row["hostname"] for row in rows])
            return [{**row, "last_action": latest.get(row["hostname"])} for row in rows]

        rows = await self.run_sync(read)
        self.write_json({"vms": rows, "count": len(rows)})


class VMHandler(AdminApiHandler):
    """GET one VM; DELETE revokes its credential (it can register nothing any more) and,
    for a VM no fleet manages, forgets it."""

    async def get(self, hostname: str) -> None:
        runtime = self.runtime
        silence = runtime.config.app.unresponsive_after_seconds
        row = await self.run_sync(
            lambda: runtime.services.registry.get(hostname, unresponsive_after=silence)
        )
        self.write_json({"vm": row})

    async def delete(self, hostname: str) -> None:
        services = self.runtime.services
        vm = await self.run_sync(services.registry.get, hostname)
        if not await self.run_sync(services.enrolment.revoke, hostname):
            raise NotFound(f"No VM named {hostname}.", field="hostname")
        removed = False
        if vm["provider"] == "manual" and vm["user_email"] is None:
            removed = await self.run_sync(services.registry.remove, [hostname]) == 1
        self.write_json({"revoked": hostname, "removed": removed})


class VMLogsTailHandler(AdminApiHandler):
    """A VM's last log lines (redacted), oldest first."""

    async def get(self, hostname: str) -> None:
        lines = await self.run_sync(self.runtime.services.logs.tail, hostname)
        self.write_json({"hostname": hostname, "lines": lines})


class VMActionsHandler(AdminApiHandler):
    """What the healer, reclaims, schedules and people did to a VM, and why; newest first."""

    async def get(self, hostname: str) -> None:
        actions = await self.run_sync(self.runtime.services.actions.for_vm, hostname)
        self.write_json({"hostname": hostname, "actions": actions})


class AdminReleaseHandler(AdminApiHandler):
    """An admin frees a VM, whoever holds it."""

    async def post(self, hostname: str) -> None:
        await self.run_sync(self.runtime.services.allocator.release_hostname, hostname)
        self.write_json({"released": hostname})


class ServerInfoHandler(AdminApiHandler):
    """Process internals for tests and benchmarks: waiters, listener, pool."""

    async def get(self) -> None:
        runtime = self.runtime

        def backends() -> int:
            with runtime.services.engine.connect() as connection:
                query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                return int(connection.execute(text(query)).scalar_one())

        self.write_json(
            {
                "pid": os.getpid(),
                "waiting_vms": runtime.waiters.count,
                "wakeups": runtime.waiters.wakeups,
                "listener_connected": runtime.listener.connected,
                "listener_reconnects": runtime.listener.reconnects,
                "database_backends": await self.run_sync(backends),
                # Statements run on the event loop's own connections (0 with that path off).
                "loop_statements": runtime.statements.statements if runtime.statements else 0,
            }
        )
