"""A table row that can be dragged onto another row (the browser's own HTML5 drag and drop), for lists whose
order is the data: the routing matrix. The row only reports where a drag started and where it was dropped;
the state decides what the move means, so the same move is also reachable with keyboard buttons."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex.event import no_args_event_spec
from reflex_components_radix.themes.components.table import TableRow

DRAG_EVENTS = ("on_drag_start", "on_drag_enter", "on_drag_over", "on_drag_end", "on_drop")


# reflex_components_radix ships no type information (no py.typed), so mypy sees TableRow as Any.
class DraggableRow(TableRow):  # type: ignore[misc]
    """``Table.Row`` with the drag and drop events Reflex does not declare on table rows (none of them pass
    arguments: the handlers are bound to the row's key)."""

    @classmethod
    def get_event_triggers(cls) -> dict[str, Any]:
        """The row's triggers plus the HTML5 drag and drop events."""
        return {**super().get_event_triggers(), **dict.fromkeys(DRAG_EVENTS, no_args_event_spec)}


def draggable_row(
    *cells: rx.Component, enabled: Any, on_start: Any, on_enter: Any, on_drop: Any, on_end: Any, **props: Any
) -> rx.Component:
    """A row the user may drag (when ``enabled``) and drop other rows on.

    ``dragover`` must cancel the browser's default or the row is not a drop target; it does so in the
    browser alone (no round trip per mouse move). ``drop`` cancels it too, so a dropped row never opens as
    a link."""
    row: rx.Component = DraggableRow.create(
        *cells,
        draggable=enabled,
        on_drag_start=on_start,
        on_drag_enter=on_enter,
        on_drag_over=rx.prevent_default,
        on_drop=[rx.prevent_default, on_drop],
        on_drag_end=on_end,
        **props,
    )
    return row
