"""One task of a run, drilled into: the datasets it read and wrote, and the whole log of one attempt as text.

Both read as the caller (RLS decides what is visible); the run page's task panel, the API's log download
and ``lakehouse runs logs`` use them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection

from control_room.db.rows import dict_rows
from control_room.services.errors import NotFound
from control_room.services.events import list_events

LOG_PAGE = 1000  # events read per round trip while a log streams out

# The datasets in the task's finishing OpenLineage events (engines report inputs and outputs there),
# with the registry's dataset when there is one; the newest report of each dataset and direction wins.
TASK_DATASETS = """
select distinct on (x.access, x.ds ->> 'namespace', x.ds ->> 'name')
       x.access, x.ds ->> 'namespace' as namespace, x.ds ->> 'name' as name, d.id as dataset_id, o.attempt
from ops.openlineage_events o
cross join lateral (
    select 'read' as access, i as ds from jsonb_array_elements(coalesce(o.event -> 'inputs', '[]')) i
    union all
    select 'wrote', u from jsonb_array_elements(coalesce(o.event -> 'outputs', '[]')) u
) x
left join ops.datasets d on d.project_id = o.project_id and d.namespace = x.ds ->> 'namespace'
                        and d.name = x.ds ->> 'name'
where o.run_id = %s and o.task_id = %s and o.event_type in ('COMPLETE', 'FAIL', 'ABORT')
order by x.access, x.ds ->> 'namespace', x.ds ->> 'name', o.id desc
limit 500
"""

TASK_OF_RUN = "select t.id, t.key from ops.tasks t where t.run_id = %s and (t.id::text = %s or t.key = %s)"


async def resolve_task(conn: AsyncConnection, *, run_id: uuid.UUID, task: str) -> tuple[uuid.UUID, str]:
    """A task of the run by id or key: (id, key); NotFound naming ``task`` otherwise."""
    async with conn.cursor() as cur:
        await cur.execute(TASK_OF_RUN, (run_id, task, task))
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"run {run_id} has no task {task!r} visible to you", field="task")
    return row[0], row[1]


async def task_datasets(conn: AsyncConnection, *, run_id: uuid.UUID, task_id: uuid.UUID) -> list[dict[str, Any]]:
    """What the task read and wrote, read side first, each dataset once."""
    return await dict_rows(conn, TASK_DATASETS, (run_id, task_id))


def log_line(event: dict[str, Any]) -> str:
    """One event as a log line: UTC time, level, type and message (its data as key=value after)."""
    data = event["data"] or {}
    extra = " ".join(f"{key}={value}" for key, value in data.items() if key not in ("stream",))
    message = (event["message"] or "").replace("\n", "\n    ")
    line = f"{event['ts'].isoformat()} {event['level'].upper():7} {event['type']}: {message}"
    return f"{line} [{extra}]\n" if extra else line + "\n"


async def attempt_log(
    conn: AsyncConnection, *, run_id: uuid.UUID, task_id: uuid.UUID, attempt: int | None
) -> AsyncIterator[str]:
    """Every event of the task (one attempt, or all of them) as log lines, oldest first, in pages."""
    after = 0
    while True:
        page = await list_events(conn, run_id=run_id, task_id=task_id, attempt=attempt, after_id=after, limit=LOG_PAGE)
        for event in page:
            yield log_line(event)
        if len(page) < LOG_PAGE:
            return
        after = page[-1]["id"]
