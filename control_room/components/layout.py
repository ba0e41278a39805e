"""The page shell every page is wrapped in: product name on top, page content below."""

from __future__ import annotations

from collections.abc import Callable

import reflex as rx
from reflex.event import EventType

PRODUCT_NAME = "Lakehouse Control Room"


def page_shell(*children: rx.Component) -> rx.Component:
    """Header with the product name above the page's content."""
    shell: rx.Component = rx.box(
        rx.hstack(
            rx.heading(PRODUCT_NAME, size="5", id="product-name"),
            align="center",
            padding_x="1.5em",
            padding_y="1em",
            border_bottom=f"1px solid {rx.color('gray', 5)}",
        ),
        rx.box(*children, padding="1.5em"),
        width="100%",
        min_height="100vh",
    )
    return shell


def layout(
    *, route: str, title: str, on_load: EventType[()] | None = None
) -> Callable[[Callable[[], rx.Component]], Callable[[], rx.Component]]:
    """Register a page at ``route`` whose content is wrapped in the shell (one decorator per page)."""

    def register(content: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        def page() -> rx.Component:
            return page_shell(content())

        page.__name__ = content.__name__
        page.__module__ = content.__module__
        rx.page(route=route, title=f"{title} · {PRODUCT_NAME}", on_load=on_load)(page)
        return content

    return register
