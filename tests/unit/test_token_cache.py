"""The API token cache OpenLineage ingest authenticates through: entries live for the TTL only, a revoke
through the API forgets the user's entries at once, and the cache stays bounded."""

from __future__ import annotations

import uuid

from control_room.api.auth import TokenCache
from control_room.services.auth import UserPrincipal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(email: str = "ol@test.example") -> UserPrincipal:
    return UserPrincipal(user_id=uuid.uuid4(), email=email)


def test_an_entry_is_served_within_its_ttl_and_looked_up_again_after() -> None:
    clock = Clock()
    cache = TokenCache(ttl=5.0, clock=clock)
    alice = user()
    cache.put("digest-a", alice)

    clock.now += 4.9
    assert cache.get("digest-a") == alice
    clock.now += 0.1
    assert cache.get("digest-a") is None  # a token revoked elsewhere is refused after at most the TTL
    assert cache.get("digest-unknown") is None


def test_forgetting_a_user_drops_only_their_tokens() -> None:
    cache = TokenCache(clock=Clock())
    alice, bob = user("alice@test.example"), user("bob@test.example")
    cache.put("alice-1", alice)
    cache.put("alice-2", alice)
    cache.put("bob-1", bob)

    cache.forget_user(alice.user_id)

    assert (cache.get("alice-1"), cache.get("alice-2"), cache.get("bob-1")) == (None, None, bob)


def test_the_cache_is_bounded_expired_entries_going_first() -> None:
    clock = Clock()
    cache = TokenCache(ttl=5.0, max_entries=3, clock=clock)
    cache.put("old", user())
    clock.now += 10
    fresh = [user() for _ in range(2)]
    cache.put("fresh-0", fresh[0])
    cache.put("fresh-1", fresh[1])
    cache.put("newest", newest := user())  # full: the expired entry makes room

    assert [cache.get(k) for k in ("fresh-0", "fresh-1", "newest")] == [*fresh, newest]
    cache.put("one-more", user())  # full of live entries: start over rather than grow
    assert cache.get("fresh-0") is None and cache.get("one-more") is not None
