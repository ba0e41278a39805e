"""supabase/ follows the Supabase CLI layout, so `supabase db reset` works on the same files."""

from __future__ import annotations

import tomllib

from control_room.config import MIGRATIONS_DIR, PROJECT_ROOT, SEED_FILE
from control_room.db.migrate import MIGRATION_NAME


def test_config_toml_points_at_our_seed_and_postgres_15() -> None:
    config = tomllib.loads((PROJECT_ROOT / "supabase" / "config.toml").read_text())
    assert config["db"]["major_version"] == 15
    assert "ops" in config["api"]["schemas"]
    for path in config["db"]["seed"]["sql_paths"]:
        assert (PROJECT_ROOT / "supabase" / path).resolve() == SEED_FILE


def test_every_migration_is_named_for_the_supabase_cli() -> None:
    names = [p.name for p in MIGRATIONS_DIR.glob("*.sql")]
    assert names
    assert all(MIGRATION_NAME.match(n) for n in names), names
