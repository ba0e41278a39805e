"""``GET /api/v1/metrics``: Prometheus exposition of queue depth, claims, expiries, outcomes, latencies."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from control_room.api.deps import Pool
from control_room.services import metrics

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=Response,
    responses={"200": {"description": "Prometheus text format.", "content": {"text/plain": {}}}},
    openapi_extra={"x-problems": ["500"]},
)
async def get_metrics(db: Pool) -> Response:
    """Prometheus metrics (unauthenticated, like most scrape targets; nothing secret is exposed)."""
    async with db.connection() as conn:
        body = await metrics.render(conn)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
