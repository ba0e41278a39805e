"""Times as people read them: in the browser's time zone (the UTC time on hover), or relative in lists
("3 minutes ago"); a person can pin UTC in their preferences (SessionState.pin_utc, kept in the browser)."""

from __future__ import annotations

import reflex as rx

from control_room.state.base import SessionState

LOCAL_FORMAT = "YYYY-MM-DD HH:mm:ss"


def local_time(iso: rx.Var[str], utc: rx.Var[str], *, relative: bool = False, **props: object) -> rx.Component:
    """``iso`` (an ISO 8601 instant) in the browser's time zone, or relative to now; ``utc`` (its UTC text)
    as the hover, and as the text itself when UTC is pinned. Empty when ``iso`` is."""
    shown = (
        rx.moment(iso, from_now=True, interval=30_000) if relative else rx.moment(iso, format=LOCAL_FORMAT, local=True)
    )
    box: rx.Component = rx.cond(
        iso == "",
        rx.text("", as_="span", **props),
        rx.text(
            rx.cond(SessionState.pin_utc, rx.text(utc, " UTC", as_="span"), shown),
            as_="span",
            title=utc.to(str) + " UTC",
            white_space="nowrap",
            class_name="local-time tabular",
            **props,
        ),
    )
    return box
