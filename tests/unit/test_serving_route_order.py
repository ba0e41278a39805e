"""The invocations proxy is the first route a request is matched against (its latency is a target of issue 23),
while the published contract keeps the routers' declared order."""

from __future__ import annotations

from starlette.routing import Match

from control_room.api import api
from control_room.api.serving import proxy_router


def _scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def test_invocations_are_matched_by_the_first_route() -> None:
    first = api.router.routes[0]
    assert getattr(first, "original_router", None) is proxy_router
    match, _ = first.matches(_scope("POST", "/api/v1/serving/churn/invocations"))
    assert match == Match.FULL
    # Nothing else is taken by it: another serving route only matches the proxy's path shape partially, if at all.
    match, _ = first.matches(_scope("GET", "/api/v1/serving/endpoints/churn"))
    assert match == Match.NONE


def test_the_contract_keeps_the_declared_route_order() -> None:
    paths = list(api.openapi()["paths"])
    assert paths.index("/api/v1/serving/{endpoint}/invocations") > paths.index("/api/v1/serving/endpoints")
    assert paths[-1] == "/api/v1/serving/{endpoint}/invocations"
