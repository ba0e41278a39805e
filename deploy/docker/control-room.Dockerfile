# The control room image: web UI, contract API and background loops (`lakehouse run`) on one port.
# Build from the repository root:
#   docker build -f deploy/docker/control-room.Dockerfile -t lakehouse-control-room .
# Run it against Postgres/Supabase with LAKEHOUSE_DATABASE_URL set (no embedded Postgres in a container).
# Untested here (no Docker engine on the build machines); linted with hadolint.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Node and npm build the Reflex frontend (bun comes from npm below); Debian's versions are the tested ones.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin lakehouse

WORKDIR /opt/lakehouse
COPY pyproject.toml uv.lock README.md rxconfig.py reflex.lock ./
COPY control_room ./control_room
COPY executor_agent ./executor_agent
COPY supabase ./supabase
COPY contracts ./contracts
COPY assets ./assets
COPY examples ./examples

# Exactly what uv.lock lists (nothing resolves in the build), then the package itself, editable: the
# control room finds its migrations, contract and assets next to its sources.
RUN pip install uv==0.13.9 \
    && uv export --frozen --no-hashes --no-emit-project --extra dbt -o /tmp/requirements.txt \
    && pip install --no-deps -r /tmp/requirements.txt \
    && pip install --no-deps -e . \
    && npm install --prefix=.tools --save-exact --no-audit --no-fund bun@1.4.5 \
    && chown -R lakehouse:lakehouse /opt/lakehouse

USER 10001:10001
ENV LAKEHOUSE_HOST=0.0.0.0 \
    LAKEHOUSE_PORT=3000 \
    LAKEHOUSE_ENV=production \
    LAKEHOUSE_LOCAL_AGENT=false \
    LAKEHOUSE_LOAD_DEMO_DATA=false \
    LAKEHOUSE_DATA_DIR=/opt/lakehouse/.lakehouse
EXPOSE 3000
# The first start builds the frontend into .web (a minute); later starts reuse it while the volume lasts.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/api/v1/health', timeout=4)"]
ENTRYPOINT ["lakehouse"]
CMD ["run"]
