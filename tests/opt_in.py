"""Opt-in tests against real external servers: deselected (not skipped) while their variable is unset."""

from __future__ import annotations

import os

import pytest


def deselect_unless_configured(config: pytest.Config, items: list[pytest.Item], *, marker: str, variable: str) -> None:
    """Drops the items marked ``marker`` from the run unless ``variable`` is set, reporting them deselected.

    A collection hook instead of ``-m "not <marker>"`` in addopts, which would clash with ``PYTEST_ARGS="-m …"``.
    """
    if os.environ.get(variable):
        return
    deselected = [item for item in items if item.get_closest_marker(marker) is not None]
    if deselected:
        items[:] = [item for item in items if item.get_closest_marker(marker) is None]
        config.hook.pytest_deselected(items=deselected)
