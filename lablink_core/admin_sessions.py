"""Server-side admin sessions: a login makes a row, the cookie carries a random token.

Only the token's SHA-256 is stored, so reading the table gives no usable cookie. A session is
live while it is neither revoked nor expired; ``/logout`` revokes one and a password change
revokes them all. Every admin request asks :meth:`AdminSessions.user_of`; answers are cached
for a couple of seconds per process, so a revocation made by another process (the CLI's
``lablink admin set-password``) takes effect within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from sqlalchemy import Connection, Engine, text

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 200


def token_id(token: str) -> str:
    """The stored id of a session token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class AdminSessions:
    """Creates, checks and revokes admin sessions in ``lablink_admin_sessions``."""

    def __init__(
        self,
        engine: Engine,
        *,
        lifetime_seconds: float = 86400.0,
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        max_cached: int = 1024,
    ) -> None:
        self._engine = engine
        self.lifetime_seconds = lifetime_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._max_cached = max_cached
        self._cache: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._lock = Lock()

    def create(self, user: str, address: str | None) -> str:
        """A new live session for ``user``; returns the token for the cookie."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "DELETE FROM lablink_admin_sessions WHERE expires_at < now() - interval '1 day'"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO lablink_admin_sessions (id, user_name, address, expires_at) "
                    "VALUES (:id, :user, :address, now() + make_interval(secs => :life))"
                ),
                {
                    "id": token_id(token),
                    "user": user,
                    "address": address,
                    "life": self.lifetime_seconds,
                },
            )
        return token

    def user_of(self, token: str | None) -> str | None:
        """Whose live session ``token`` is, or None (unknown, revoked, expired)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = token_id(token)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        with self._engine.connect() as connection:
            user = connection.execute(
                text(
                    "SELECT user_name FROM lablink_admin_sessions WHERE id = :id "
                    "AND revoked_at IS NULL AND expires_at > now()"
                ),
                {"id": key},
            ).scalar()
        self._remember(key, None if user is None else str(user), now)
        return None if user is None else str(user)

    def revoke(self, token: str | None) -> None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return
        key = token_id(token)
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE lablink_admin_sessions SET revoked_at = now() "
                    "WHERE id = :id AND revoked_at IS NULL"
                ),
                {"id": key},
            )
        self._remember(key, None, self._clock())

    def revoke_all(self) -> int:
        """Revoke every live session (a password change); returns how many there were."""
        with self._engine.begin() as connection:
            count = revoke_all_sessions(connection)
        with self._lock:
            self._cache.clear()
        return count

    def _remember(self, key: str, user: str | None, now: float) -> None:
        with self._lock:
            self._cache[key] = (user, now)
            self._cache.move_to_end(key)
            while len(self._cache) > self._max_cached:
                self._cache.popitem(last=False)


def revoke_all_sessions(connection: Connection) -> int:
    """Revoke every live session inside the caller's transaction."""
    result = connection.execute(
        text("UPDATE lablink_admin_sessions SET revoked_at = now() WHERE revoked_at IS NULL")
    )
    return int(result.rowcount)
