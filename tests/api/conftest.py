"""Call ``control_room.api.api`` in-process against a chosen database, with settings and pool reset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest

from control_room.api import api
from control_room.config import get_settings

ApiGet = Callable[[str | None, str], httpx.Response]


@pytest.fixture
def api_get(monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiGet]:
    """``api_get(database_url, path)``: one GET through the app's lifespan (None: URL unset).

    Settings are cached and the pool is a process singleton bound to an event loop: each call
    clears the settings cache, runs in a fresh loop, and leaves through the lifespan, which
    closes and forgets the pool, so no state leaks into the next call.
    """

    async def call(path: str) -> httpx.Response:
        async with api.router.lifespan_context(api):
            transport = httpx.ASGITransport(app=api)
            async with httpx.AsyncClient(transport=transport, base_url="http://control-room") as client:
                return await client.get(path)

    def get(database_url: str | None, path: str) -> httpx.Response:
        if database_url is None:
            monkeypatch.delenv("LAKEHOUSE_DATABASE_URL", raising=False)
        else:
            monkeypatch.setenv("LAKEHOUSE_DATABASE_URL", database_url)
        get_settings.cache_clear()
        try:
            return asyncio.run(call(path))
        finally:
            get_settings.cache_clear()

    yield get
    get_settings.cache_clear()
