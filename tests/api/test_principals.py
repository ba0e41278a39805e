"""Who is calling, remembered (control_room/api/principals.py), against a real server: a token seen once is
not looked up again, and a change behind it in the database, from any process, ends that at its notice."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.api.test_executor_flow import client
from tests.live import LiveServer, Provisioner, refused_soon


def test_a_token_seen_once_is_not_looked_up_again_until_the_database_says_it_changed(
    live_api: LiveServer, provision: Provisioner
) -> None:
    tenant = provision.tenant("principals")
    user_id, token = provision.user_token("viewer", tenant)
    _, other_token = provision.user_token("viewer", tenant)
    user, other = client(live_api, token), client(live_api, other_token)
    assert user.get("/runs").status_code == 200

    # Every look-up reads ops.api_tokens: while it is locked, only a remembered token gets an answer.
    with psycopg.connect(provision.database_url) as locker:
        locker.execute("lock table ops.api_tokens in access exclusive mode")
        assert user.get("/runs", timeout=10).status_code == 200
        with pytest.raises(httpx.TimeoutException):  # one it has not seen is looked up: it waits for the lock
            other.get("/runs", timeout=1.0)
        locker.rollback()
    assert other.get("/runs").status_code == 200

    # Deactivating the user in SQL (no API involved) reaches the server as a notice: refused from then on.
    with psycopg.connect(provision.database_url, autocommit=True) as conn:
        conn.execute("update ops.users set is_active = false where id = %s", (user_id,))
    assert refused_soon(lambda: user.get("/runs")).status_code == 401
