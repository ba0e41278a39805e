"""Loads the demo organisation, project, environments, routing and caps once."""

from __future__ import annotations

import psycopg

from control_room.config import SEED_FILE

DEMO_ORG_SLUG = "demo"


def load_demo_data(database_url: str) -> bool:
    """Apply supabase/seed.sql unless the demo org already exists; True when it was loaded now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute("select 1 from ops.orgs where slug = %s", (DEMO_ORG_SLUG,)).fetchone()
        if found:
            return False
        with conn.transaction():
            conn.execute(SEED_FILE.read_text(encoding="utf-8").encode())
    return True
