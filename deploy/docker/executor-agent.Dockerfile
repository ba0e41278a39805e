# The executor agent image: packaging/executor-agent (httpx, pydantic, pydantic-settings) and nothing of the
# control room. Build from the repository root:
#   docker build -f deploy/docker/executor-agent.Dockerfile -t lakehouse-executor .
#   docker build -f deploy/docker/executor-agent.Dockerfile --build-arg EXTRAS=dbt,duckdb -t lakehouse-executor:dbt .
# Untested here (no Docker engine on the build machines); linted with hadolint.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed non-root user; the spool and work folders are its own (mount a volume on the spool to keep it).
# A second user, `task`, for LAKEHOUSE_EXECUTOR_TASK_USER: tasks then run as another uid and cannot read the
# agent's token, spool or memory. Switching users needs the agent to run as root (`docker run --user 0 -e
# LAKEHOUSE_EXECUTOR_TASK_USER=task`; Kubernetes: runAsUser 0 with only the SETUID, SETGID, CHOWN and KILL
# capabilities). As the default non-root user, tasks share the agent's uid: the agent is then non-dumpable,
# so they cannot read /proc/<agent>/environ, but in-process engines (duckdb, delta) run inside the agent.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin agent \
    && useradd --no-create-home --uid 10002 --shell /usr/sbin/nologin task \
    && mkdir -p /var/lib/lakehouse-executor/spool /var/lib/lakehouse-executor/work \
    && chown -R agent:agent /var/lib/lakehouse-executor \
    && chmod 0700 /var/lib/lakehouse-executor/spool \
    && chmod 0711 /var/lib/lakehouse-executor/work

WORKDIR /opt/lakehouse-executor
COPY executor_agent ./executor_agent
COPY packaging/executor-agent ./packaging/executor-agent

# Optional engines: EXTRAS=dbt,spark,duckdb,trino installs their libraries (see packaging/executor-agent).
ARG EXTRAS=""
# Exactly what packaging/executor-agent/uv.lock lists for those extras, then the agent itself.
RUN pip install uv==0.13.9 \
    && uv export --frozen --no-hashes --no-emit-project --project packaging/executor-agent \
        --all-extras -o /tmp/all.txt \
    && uv export --frozen --no-hashes --no-emit-project --project packaging/executor-agent \
        -o /tmp/base.txt \
    && pip install --no-deps -r /tmp/base.txt \
    && pip install --constraint /tmp/all.txt "./packaging/executor-agent${EXTRAS:+[${EXTRAS}]}"

USER 10001:10001
ENV LAKEHOUSE_EXECUTOR_SPOOL_DIR=/var/lib/lakehouse-executor/spool \
    LAKEHOUSE_EXECUTOR_WORK_DIR=/var/lib/lakehouse-executor/work
# LAKEHOUSE_EXECUTOR_URL and LAKEHOUSE_EXECUTOR_TOKEN come from the deployment (the token from a secret).
# SIGTERM lets running tasks finish within LAKEHOUSE_EXECUTOR_GRACE_PERIOD_S (30 s), then hands their leases
# back: give the container a longer stop timeout (Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["lakehouse-executor"]
CMD ["run"]
