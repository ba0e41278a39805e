"""The principals the API remembers by token (control_room/api/principals.py): an entry serves only the auth
generation it was looked up in and only while the notifier listens, never past its token's expiry or the
TTL, and the cache stays bounded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from control_room.api.principals import PrincipalCache
from control_room.services.auth import ExecutorPrincipal, UserPrincipal

NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock, *, ttl: float = 60.0, max_entries: int = 10_000) -> PrincipalCache:
    """A cache on the test's clock, whose wall clock reads NOON at the start."""

    def wall() -> datetime:
        return NOON + timedelta(seconds=clock.now - 1000.0)

    return PrincipalCache(ttl=ttl, max_entries=max_entries, clock=clock, wall=wall)


def user(email: str = "ol@test.example") -> UserPrincipal:
    return UserPrincipal(user_id=uuid.uuid4(), email=email)


def test_an_entry_serves_its_generation_within_the_ttl_only() -> None:
    clock = Clock()
    principals = cache(clock, ttl=60.0)
    alice = user()
    principals.put("digest-a", alice, generation=7, expires_at=None)

    clock.now += 59.9
    assert principals.get("digest-a", 7) == alice
    clock.now += 0.1
    assert principals.get("digest-a", 7) is None  # the TTL bounds how stale last_used_at gets
    assert principals.get("digest-unknown", 7) is None


def test_a_notice_voids_every_entry_of_the_generation_before() -> None:
    principals = cache(Clock())
    agent = ExecutorPrincipal(executor_id=uuid.uuid4(), name="a1", pool="default", org_id=uuid.uuid4())
    principals.put("digest-x", agent, generation=7, expires_at=None)
    assert principals.get("digest-x", 7) == agent

    assert principals.get("digest-x", 8) is None  # a token, user, session or executor changed meanwhile
    assert principals.get("digest-x", 7) is None  # and the entry is gone, not kept for a later generation

    # A look-up that began before a notice is stored under its older generation: never served after it.
    principals.put("digest-x", agent, generation=8, expires_at=None)
    principals.put("digest-late", user(), generation=8, expires_at=None)
    assert principals.get("digest-late", 9) is None


def test_nothing_is_remembered_or_served_while_the_notifier_does_not_listen() -> None:
    principals = cache(Clock())
    alice = user()
    principals.put("digest-a", alice, generation=None, expires_at=None)
    assert principals.get("digest-a", 3) is None
    principals.put("digest-a", alice, generation=3, expires_at=None)
    assert principals.get("digest-a", None) is None


def test_an_entry_ends_when_its_token_expires() -> None:
    clock = Clock()
    principals = cache(clock, ttl=60.0)
    alice = user()
    principals.put("session", alice, generation=1, expires_at=NOON + timedelta(seconds=10))
    principals.put("expired", alice, generation=1, expires_at=NOON - timedelta(seconds=1))

    clock.now += 9.9
    assert principals.get("session", 1) == alice
    assert principals.get("expired", 1) is None
    clock.now += 0.1
    assert principals.get("session", 1) is None


def test_forget_all_is_at_once_and_the_cache_stays_bounded() -> None:
    clock = Clock()
    principals = cache(clock, ttl=5.0, max_entries=3)
    principals.put("old", user(), generation=1, expires_at=None)
    clock.now += 10
    fresh = [user() for _ in range(2)]
    principals.put("fresh-0", fresh[0], generation=1, expires_at=None)
    principals.put("fresh-1", fresh[1], generation=1, expires_at=None)
    principals.put("newest", newest := user(), generation=1, expires_at=None)  # full: the expired entry goes

    assert [principals.get(k, 1) for k in ("fresh-0", "fresh-1", "newest")] == [*fresh, newest]
    principals.put("one-more", user(), generation=1, expires_at=None)  # full of live entries: start over
    assert [principals.get(k, 1) for k in ("fresh-0", "newest")] == [None, None]

    principals.forget_all()  # this process revoked something: its notice is still on the way
    assert principals.get("one-more", 1) is None
