"""Who is calling, remembered: the principal behind each bearer token, kept until the database says that
something it was read from changed.

Every API request used to look its token up in the database: a pool checkout and a round trip before the
route's own work (a tenth of a submit, a fifth of an event append; bench/results/). Now the first request
with a token looks it up and later ones find it here, keyed by the token's SHA-256 (the token itself is
never kept), for as long as all of these hold:

* the process's notifier has listened without a break since the look-up, and no notice came on
  ``lakehouse_auth_changed``: the database sends one when a statement revokes, expires, deletes or re-hashes
  a token, ends a session, deactivates or renames a user, or moves or revokes an executor (migration
  20261210000500_auth_change_notices.sql), so a revoke in any process or replica, or by the CLI, is
  refused from the moment its notice arrives;
* the token has not expired (sessions and API tokens carry their expiry);
* at most ``ttl`` seconds have passed: an API token's last_used_at is written by the look-up, at most once
  a minute (services/auth.TOKEN_TOUCH_SECONDS), and stays as fresh as that.

Refusals are never remembered (a token just created works at once), and roles never are: rights are
checked in SQL on every request. While the notifier is not listening nothing is served from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool

from control_room.db.notify import get_notifier
from control_room.services.auth import TOKEN_TOUCH_SECONDS, Caller, hash_token, look_up


@dataclass(frozen=True, slots=True)
class _Known:
    principal: Caller
    generation: int
    until: float  # on the cache's clock


class PrincipalCache:
    """Principals by token digest, each valid for one auth generation of the notifier (see the module)."""

    def __init__(
        self,
        *,
        ttl: float = TOKEN_TOUCH_SECONDS,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.wall = wall
        self._entries: dict[str, _Known] = {}
        self._generation: int | None = None

    def get(self, digest: str, generation: int | None) -> Caller | None:
        """The principal remembered for ``digest`` in this generation (None: look it up)."""
        known = self._entries.get(digest)
        if known is None or generation is None:
            return None
        if known.generation != generation or known.until <= self.clock():
            del self._entries[digest]
            return None
        return known.principal

    def put(self, digest: str, principal: Caller, generation: int | None, expires_at: datetime | None) -> None:
        """Remember a principal looked up in ``generation`` (read before the look-up began)."""
        if generation is None:
            return
        if generation != self._generation:  # everything older is void: start over
            self._entries.clear()
            self._generation = generation
        now = self.clock()
        life = self.ttl if expires_at is None else min(self.ttl, (expires_at - self.wall()).total_seconds())
        if life <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries = {k: v for k, v in self._entries.items() if v.until > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[digest] = _Known(principal, generation, now + life)

    def forget_all(self) -> None:
        """Forget everyone: this process has just revoked something (its notice is on the way)."""
        self._entries.clear()


PRINCIPALS = PrincipalCache()


async def principal_of(db: AsyncConnectionPool, token: str) -> Caller:
    """The principal behind a bearer token: remembered, or looked up (Unauthorized when none)."""
    digest = hash_token(token)
    generation = (await get_notifier()).auth_generation()  # read before the look-up: a change after voids it
    known = PRINCIPALS.get(digest, generation)
    if known is not None:
        return known
    async with db.connection() as conn:
        principal, expires_at = await look_up(conn, token)
    PRINCIPALS.put(digest, principal, generation, expires_at)
    return principal
