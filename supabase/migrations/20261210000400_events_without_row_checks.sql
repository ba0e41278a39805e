-- Event append, fourth pass (issue 25, deliver 1: "no per-row triggers on hot paths where a set-based
-- statement does it"). ops.events' two foreign keys (run_id -> ops.runs, task_id -> ops.tasks) ran a
-- referential check per inserted row: 200 SPI queries and row locks for a batch of 100 events, a third of
-- ops.append_events' server time (1.72 ms of CPU per batch with them, 1.17 ms without, same run).
-- What they guarded is already guaranteed by the writers:
--  * ops.append_events takes run_id and task_id from the attempt row it checks the lease against, under
--    the task's lock; every other writer is one of our SQL functions writing ids of rows it just read;
--  * no role but service_role may insert into ops.events (20261126000300_rls.sql), and runs and tasks are
--    never deleted (retention removes a run's events and attempts, never the run or its tasks).
-- Append-only event logs of the peer tools carry no foreign keys for the same reason (Dagster's event_logs,
-- Prefect's log, Airflow's log). The run_id index and the (task_id, attempt, seq) key stay.

set local lock_timeout = '10s';

alter table ops.events drop constraint events_run_id_fkey;
alter table ops.events drop constraint events_task_id_fkey;
