"""Catalog test settings: the opt-in test against a real OpenMetadata server."""

from __future__ import annotations

import pytest

from tests.opt_in import deselect_unless_configured


def pytest_configure(config: pytest.Config) -> None:
    # Registered here rather than in pyproject.toml's marker list (--strict-markers needs it either way).
    config.addinivalue_line(
        "markers",
        "real_openmetadata: needs a real OpenMetadata at OPENMETADATA_URL (with OPENMETADATA_TOKEN); "
        "deselected (not skipped) while OPENMETADATA_URL is unset",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked real_openmetadata need a real server: without OPENMETADATA_URL they are deselected, not
    skipped (as real_trino is, see tests/engines/sql/conftest.py)."""
    deselect_unless_configured(config, items, marker="real_openmetadata", variable="OPENMETADATA_URL")
