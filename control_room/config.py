"""The control room's one typed settings object (environment prefix ``LAKEHOUSE_``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
SEED_FILE = PROJECT_ROOT / "supabase" / "seed.sql"


class Settings(BaseSettings):
    """Everything the control room reads from its environment, with working defaults."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", extra="ignore")

    env: str = Field(
        default="development",
        description="development, test or production; production refuses the built-in development secrets.",
    )
    database_url: str | None = Field(
        default=None,
        description="Postgres URL of the control plane (a Supabase project's direct connection works). "
        "Unset: an embedded PostgreSQL is started under data_dir.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".lakehouse",
        description="Where the embedded Postgres, local artifacts and agent spools live.",
    )
    port: int = Field(default=3000, ge=1, le=65535, description="The one port serving UI and API.")
    host: str = Field(default="127.0.0.1", description="Interface the web server binds to.")
    session_secret: str = Field(
        default="dev-only-session-secret-change-me",
        description="Secret used to sign user sessions; must be set outside development.",
    )
    load_demo_data: bool = Field(default=True, description="Load the demo org, project and runs once.")
    local_agent: bool = Field(
        default=True,
        description="`lakehouse run` also starts one executor agent (pool default) with the engines installed here.",
    )
    lease_seconds: int = Field(default=60, ge=1, description="Task lease length granted by a claim.")
    reaper_interval_seconds: float = Field(default=5.0, gt=0, description="How often expired leases are reaped.")
    retention_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often the retention loop archives runs past their project's retention."
    )
    retention_runs_per_pass: int = Field(
        default=20, ge=1, le=10_000, description="Runs one retention pass claims and archives at most."
    )
    retention_delete_batch: int = Field(
        default=5000, ge=1, le=100_000, description="Archived rows removed per transaction (keeps each lock short)."
    )
    claim_wait_max_seconds: float = Field(default=25.0, ge=0, description="Longest claim long-poll.")
    sse_keepalive_seconds: float = Field(default=15.0, gt=0, description="SSE comment keep-alive interval.")
    executor_offline_after_seconds: int = Field(
        default=90, ge=1, description="Heartbeat age after which an executor counts as offline."
    )
    artifact_store: str = Field(
        default="local", pattern="^(local|s3)$", description="Where artifact bytes live: local or s3."
    )
    artifacts_dir: Path | None = Field(
        default=None, description="Folder of the local artifact store (default: <data_dir>/artifacts)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, SeaweedFS, Supabase Storage); unset: AWS."
    )
    s3_bucket: str = Field(default="lakehouse-artifacts", description="Bucket holding artifacts.")
    s3_prefix: str = Field(default="artifacts/", description="Key prefix for artifacts in the bucket.")
    s3_region: str = Field(default="us-east-1", description="S3 region name.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id (unset: boto3's chain).")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key.")
    upload_url_expiry_seconds: int = Field(
        default=900, ge=30, description="Lifetime of an artifact upload URL (presigned or local)."
    )
    supabase_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LAKEHOUSE_SUPABASE_URL", "SUPABASE_URL"),
        description="Supabase project URL (https://<ref>.supabase.co): when set, people sign in with Supabase Auth "
        "instead of local accounts.",
    )
    supabase_anon_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("LAKEHOUSE_SUPABASE_ANON_KEY", "SUPABASE_ANON_KEY", "SUPABASE_KEY"),
        description="The project's anon (public) API key, sent as `apikey` to Supabase Auth.",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="Lifetime of a signed-in web session, in hours."
    )
    sign_in_window_seconds: int = Field(
        default=900, ge=1, description="Window over which failed sign-ins are counted for throttling."
    )
    sign_in_max_failures_per_account: int = Field(
        default=5, ge=1, description="Failed sign-ins of one account within the window before it is throttled."
    )
    sign_in_max_failures_per_client: int = Field(
        default=20,
        ge=1,
        description="Failed sign-ins from one client address within the window before it is throttled.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Minimum pooled DB connections per process.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum pooled DB connections per process.")
    api_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description="Worker processes of `lakehouse api` (the contract API served on its own); default: one per core.",
    )
    # Alerts (issue 20): the evaluator, the deliveries sender and the SMTP server it sends through.
    alerts_evaluate_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often time-based alert rules (SLA, freshness, offline) are evaluated."
    )
    alerts_delivery_interval_seconds: float = Field(
        default=1.0, gt=0, description="Longest wait of the deliveries sender between looks at the outbox."
    )
    alerts_public_url: str = Field(
        default="http://127.0.0.1:3000", description="Base URL of the control room in alert links (runs, incidents)."
    )
    smtp_host: str | None = Field(default=None, description="SMTP server for alert e-mail; unset: e-mail is not sent.")
    smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP server port.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_username: str | None = Field(default=None, description="SMTP AUTH user name (unset: no AUTH).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP AUTH password.")
    smtp_from: str = Field(default="lakehouse@localhost", description="From address of alert e-mail.")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, description="SMTP connect and command timeout.")
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle to verify the SMTP server's STARTTLS certificate (unset: the system's)."
    )

    # MLflow (issue 23): the tracking server `lakehouse run` starts unless MLFLOW_TRACKING_URI is set.
    mlflow_host: str = Field(default="127.0.0.1", description="Interface the started MLflow tracking server binds to.")
    mlflow_port: int = Field(default=5050, ge=1, le=65535, description="Port of the started MLflow tracking server.")
    mlflow_database: str = Field(
        default="mlflow", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Database of the started MLflow server's backend store, on the control plane's Postgres.",
    )  # fmt: skip
    mlflow_server: bool = Field(
        default=True,
        description="`lakehouse run` starts an MLflow tracking server when MLFLOW_TRACKING_URI is not set.",
    )
    openmetadata_url: str | None = Field(
        default=None, description="OpenMetadata server (https://host:8585) the catalog syncs with; unset: no sync."
    )
    openmetadata_token: SecretStr | None = Field(
        default=None, description="JWT of an OpenMetadata bot allowed to create tables and lineage."
    )
    openmetadata_service: str = Field(
        default="lakehouse", description="OpenMetadata database service (Custom Database) our datasets go under."
    )
    # Superset (issue 24): push dashboards to it and embed them with guest tokens; unset URL: no Superset.
    superset_url: str | None = Field(
        default=None, description="Superset's base URL as the control room's server reaches it (http://127.0.0.1:8088)."
    )
    superset_public_url: str | None = Field(
        default=None, description="Superset's base URL as browsers reach it (unset: superset_url)."
    )
    superset_username: str = Field(default="lh-service", description="Superset service account (an Admin).")
    superset_password: SecretStr | None = Field(default=None, description="Password of the Superset service account.")
    superset_reader_password: SecretStr | None = Field(
        default=None,
        description="Password of the read-only role lakehouse_superset_reader, with which Superset reads the control "
        "plane's dashboard relations (never the DuckDB warehouse: DuckDB allows one writer process).",
    )
    superset_reader_host: str | None = Field(
        default=None, description="Host:port Superset uses to reach the control plane's Postgres (unset: the URL's)."
    )
    nl2sql_max_scan_bytes: int | None = Field(
        default=10 * 1024**3,
        ge=1,
        description="Ask (NL→SQL): a statement whose EXPLAIN estimate scans more bytes is refused before it runs (the "
        "lower of this and the scanned_bytes_per_query cap that applies); unset: only the cap.",
    )

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production" and self.session_secret.startswith("dev-only"):
            raise ValueError("LAKEHOUSE_SESSION_SECRET must be set to a random value when LAKEHOUSE_ENV=production")
        return self

    @property
    def artifacts_path(self) -> Path:
        """Folder of the local artifact store."""
        return self.artifacts_dir or self.data_dir / "artifacts"

    @property
    def pgdata_dir(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.data_dir / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
