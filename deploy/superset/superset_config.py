"""Superset's configuration for the control room's local instance (`make superset`, the tests): read from the
environment the control room's recipe sets (control_room/services/superset_local.py)."""

import os

# Superset's own metadata (users, dashboards, charts) lives in the control plane's Postgres, in a database of its own.
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_METADATA_URI"]
SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
# Dashboards are embedded in the control room with guest tokens it mints (POST /api/v1/security/guest_token/).
FEATURE_FLAGS = {"EMBEDDED_SUPERSET": True}
GUEST_ROLE_NAME = "Gamma"
GUEST_TOKEN_JWT_SECRET = os.environ["SUPERSET_GUEST_TOKEN_SECRET"]
GUEST_TOKEN_JWT_EXP_SECONDS = 300
# The REST API is used by a service account with a bearer token, not by forms.
WTF_CSRF_ENABLED = False
# The control room's pages embed Superset's from another origin (another port).
TALISMAN_ENABLED = False
HTTP_HEADERS: dict[str, str] = {}
ENABLE_CORS = False
# Local instance: one process, no Celery, results and caches in memory.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
# The read-only connection onto the control plane is on 127.0.0.1: allow it (Superset refuses loopback hosts only
# when PREVENT_UNSAFE_DB_CONNECTIONS meets SQLite; kept explicit).
PREVENT_UNSAFE_DB_CONNECTIONS = True
SQLLAB_CTAS_NO_LIMIT = False
