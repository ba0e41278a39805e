"""A body validated from its bytes (control_room/api/json_body.py) is the body FastAPI's own path gives, and a
bad body gets FastAPI's own answer: the same status and problem, the same field named."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from control_room.api.executors import EVENTS_JSON
from control_room.api.json_body import post_with_model_body
from control_room.api.models import EventBatch
from control_room.api.problems import install as install_problem_handlers

LEASE = "6f1c2a8e-9d4b-4c7e-8f00-1b2c3d4e5f60"


class CountedBatch(EventBatch):
    """EventBatch, counting the bodies validated straight from bytes."""

    from_bytes: ClassVar[int] = 0

    @classmethod
    def model_validate_json(cls, *args: Any, **kwargs: Any) -> Any:
        CountedBatch.from_bytes += 1
        return super().model_validate_json(*args, **kwargs)


def echo(body: EventBatch) -> dict[str, Any]:
    return {"lease_token": str(body.lease_token), "events": EVENTS_JSON.dump_json(body.events).decode()}


class Client:
    """Posts to the app in this process (httpx over ASGI), one event loop a call."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def post(self, path: str, **request: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await client.post(path, **request)

        return asyncio.run(send())


@pytest.fixture(scope="module")
def client() -> Client:
    app = FastAPI()
    install_problem_handlers(app)
    router = APIRouter()

    @router.post("/plain")
    async def plain(body: EventBatch) -> dict[str, Any]:
        return echo(body)

    @post_with_model_body(router, "/fast", CountedBatch)
    async def fast(body: CountedBatch) -> dict[str, Any]:
        return echo(body)

    app.include_router(router)
    return Client(app)


GOOD = [
    {"lease_token": LEASE, "events": []},
    {
        "lease_token": LEASE,
        "events": [
            {"seq": 0},
            {"seq": 1, "ts": "2026-12-05T21:00:00Z", "type": "sql.statement", "level": "warning", "message": "é\u2028"},
            {"seq": 2, "data": {"big": 2**70, "neg": -(2**64), "none": None, "nested": [{"x": None}, 1.5, "s"]}},
            {"seq": "3", "ts": "2026-12-05 21:00:00.123456+01:00", "data": {}},
        ],
    },
]
BAD: list[Any] = [
    {"lease_token": LEASE, "events": [{"seq": -1}]},
    {"lease_token": LEASE, "events": [{"seq": 0, "level": "loud"}]},
    {"lease_token": LEASE, "events": [{"seq": 0, "colour": "red"}]},
    {"lease_token": "not-a-uuid", "events": []},
    {"events": [{"seq": 0}]},
    [1, 2],
]


@pytest.mark.parametrize("body", GOOD, ids=["empty", "edges"])
def test_a_good_body_is_the_same_body_and_comes_from_the_bytes(client: Client, body: dict[str, Any]) -> None:
    before = CountedBatch.from_bytes
    fast = client.post("/fast", json=body)
    assert CountedBatch.from_bytes == before + 1
    plain = client.post("/plain", json=body)
    assert fast.status_code == plain.status_code == 200
    assert fast.json() == plain.json()


def test_duplicate_keys_keep_the_last_value_as_before(client: Client) -> None:
    raw = '{"lease_token": "LEASE", "events": [{"seq": 0, "data": {"k": 1, "k": 2}}]}'.replace("LEASE", LEASE)
    headers = {"content-type": "application/json"}
    fast, plain = (client.post(path, content=raw, headers=headers) for path in ("/fast", "/plain"))
    assert fast.json() == plain.json()
    assert json.loads(fast.json()["events"])[0]["data"] == {"k": 2}


@pytest.mark.parametrize("body", BAD, ids=["seq", "level", "unknown-field", "lease", "missing", "not-an-object"])
def test_a_bad_body_gets_fastapis_own_answer(client: Client, body: Any) -> None:
    fast, plain = client.post("/fast", json=body), client.post("/plain", json=body)
    assert fast.status_code == plain.status_code == 422
    assert fast.json() == plain.json()
    assert fast.json()["errors"], fast.json()


@pytest.mark.parametrize("raw", ['{"lease_token": ', "", "null"], ids=["broken", "empty", "null"])
def test_a_body_that_is_not_a_batch_gets_fastapis_own_answer(client: Client, raw: str) -> None:
    headers = {"content-type": "application/json"}
    fast, plain = (client.post(path, content=raw, headers=headers) for path in ("/fast", "/plain"))
    assert fast.status_code == plain.status_code
    assert fast.status_code in (400, 422)
    assert fast.json() == plain.json()
