"""The page shell every page is wrapped in: sidebar navigation, the project/environment switcher,
the signed-in user with their role, and the light/dark toggle; plus the one ``layout`` decorator."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import reflex as rx
from reflex.event import EventType

from control_room import routes
from control_room.components.api_tokens import api_tokens_link
from control_room.components.bell import notification_bell
from control_room.components.live import live_ticker
from control_room.components.post_form import post_form
from control_room.components.styles import ROW
from control_room.state.base import ALL, ENVIRONMENTS, LOAD_WATCH_SECONDS, SessionState
from control_room.state.rows import ProjectChoice

PRODUCT_NAME = "Lakehouse Control Room"
SIDEBAR_WIDTH = "232px"

NAV: tuple[tuple[str, str, str], ...] = (
    ("Overview", "layout-dashboard", routes.HOME),
    ("Runs", "play", routes.RUNS),
    ("Jobs", "calendar-clock", routes.JOBS),
    ("Promotions", "git-pull-request", routes.PROMOTIONS),
    ("Executors", "server", routes.EXECUTORS),
    ("Artifacts", "package", routes.ARTIFACTS),
    ("Catalog", "library", routes.CATALOG),
    ("Lineage", "git-fork", routes.LINEAGE),
    ("Alerts", "bell", routes.ALERTS),
    ("Routing & caps", "route", routes.GOVERNANCE),
    ("Experiments", "flask-conical", routes.ML_EXPERIMENTS),
    ("Models", "brain-circuit", routes.ML_MODELS),
    ("Endpoints", "radio-tower", routes.ML_ENDPOINTS),
    ("Policies", "shield-check", routes.POLICIES),
    ("Dashboards", "chart-column", routes.DASHBOARDS),
    ("Ask", "message-circle-question", routes.ASK),
)
LATER_ICONS = {"jobs": "calendar-clock", "governance": "route", "alerts": "bell", "catalog": "library"}

THEME = {"accent_color": "indigo", "gray_color": "slate", "radius": "medium", "scaling": "100%"}


def _is_active(route: str) -> rx.Var[bool]:
    path = rx.State.router.route_id  # the route pattern, e.g. /runs/[run_id]
    if route == routes.HOME:
        return path == routes.HOME
    return path.startswith(route)


def _nav_item(label: str, icon: str, route: str) -> rx.Component:
    active = _is_active(route)
    item: rx.Component = rx.link(
        rx.hstack(
            rx.icon(icon, size=16, flex_shrink="0"),
            rx.text(label, size="2", weight="medium", class_name="nav-label"),
            spacing="3",
            align="center",
        ),
        href=route,
        title=label,
        underline="none",
        class_name=rx.cond(active, "nav-item nav-item-active", "nav-item"),
        id=f"nav-{label.lower()}",
    )
    return item


def _later_item(feature: str, label: str) -> rx.Component:
    item: rx.Component = rx.link(
        rx.hstack(
            rx.icon(LATER_ICONS.get(feature, "circle-dashed"), size=16, flex_shrink="0"),
            rx.text(label, size="2", white_space="nowrap", flex_shrink="0", class_name="nav-label"),
            rx.badge(
                "soon",
                size="1",
                variant="outline",
                color_scheme="gray",
                flex_shrink="0",
                margin_left="auto",
                class_name="nav-label",
            ),
            **ROW,
            width="100%",
        ),
        href=routes.coming_later(feature),
        underline="none",
        class_name="nav-item nav-item-later",
        title=f"{label}: not yet available, a later release adds this page",
        id=f"nav-later-{feature}",
    )
    return item


def _user_card() -> rx.Component:
    card: rx.Component = rx.vstack(
        rx.hstack(
            rx.avatar(fallback=SessionState.user_initials, size="2", radius="full", variant="soft"),
            rx.vstack(
                rx.text(SessionState.user_email, size="1", weight="medium", trim="both", class_name="truncate",
                        id="signed-in-user"),
                rx.hstack(
                    rx.badge(
                        rx.cond(SessionState.role != "", SessionState.role, "no role"),
                        size="1",
                        variant="surface",
                        color_scheme=rx.cond(SessionState.role == "admin", "crimson", "indigo"),
                        id="signed-in-role",
                    ),
                    rx.cond(SessionState.is_org_admin, rx.badge("org admin", size="1", variant="outline")),
                    spacing="1",
                ),
                spacing="1",
                min_width="0",
                class_name="nav-label",
            ),
            spacing="3",
            align="center",
            width="100%",
        ),
        rx.hstack(
            # A form post: the server ends the session and clears the HttpOnly cookie (see api/web_sessions.py).
            post_form(
                rx.button(
                    rx.icon("log-out", size=14), rx.text("Sign out", as_="span", class_name="nav-label"),
                    size="1", variant="soft", color_scheme="gray", type="submit", id="sign-out", title="Sign out",
                ),
                action=routes.WEB_SIGN_OUT,
            ),
            rx.link(
                rx.button(rx.icon("bell-ring", size=14), rx.text("Preferences", as_="span", class_name="nav-label"),
                          size="1", variant="soft", color_scheme="gray"),
                href=routes.PREFERENCES, id="user-preferences", title="Preferences",
            ),
            rx.spacer(),
            api_tokens_link(),
            rx.tooltip(
                rx.icon_button(
                    rx.color_mode_cond(light=rx.icon("moon", size=14), dark=rx.icon("sun", size=14)),
                    size="1", variant="soft", color_scheme="gray", on_click=rx.toggle_color_mode,
                    id="theme-toggle", aria_label="Switch light or dark",
                ),
                content="Light / dark",
            ),
            width="100%",
            wrap="wrap",
            class_name="user-actions",
        ),
        spacing="3",
        padding="12px",
        border_top=f"1px solid {rx.color('gray', 5)}",
        width="100%",
    )  # fmt: skip
    return card


def sidebar() -> rx.Component:
    """Product, navigation (working pages, then those coming later) and the signed-in user."""
    bar: rx.Component = rx.vstack(
        rx.hstack(
            rx.box(rx.icon("layers", size=18, color="white"), class_name="brand-mark"),
            rx.vstack(
                rx.text("Lakehouse", size="3", weight="bold", line_height="1"),
                rx.text("Control Room", size="1", color_scheme="gray", line_height="1"),
                spacing="1",
                class_name="nav-label",
            ),
            spacing="3",
            align="center",
            padding="16px 16px 8px",
            id="product-name",
            aria_label=PRODUCT_NAME,
        ),
        rx.vstack(*(_nav_item(*item) for item in NAV), spacing="1", width="100%", padding="8px"),
        *([rx.text("Coming later", size="1", color_scheme="gray", weight="medium", padding="8px 20px 0",
                   class_name="nav-label")]
          if routes.LATER_FEATURES else []),
        rx.vstack(
            *(_later_item(feature, label) for feature, label in routes.LATER_FEATURES.items()),
            spacing="1",
            width="100%",
            padding="4px 8px",
        ),
        rx.spacer(),
        _user_card(),
        width="100%",
        height="100vh",
        position="sticky",
        top="0",
        spacing="2",
        overflow_y="auto",
    )
    # The column's background runs the page's full height; the navigation inside stays in view. Below
    # 1100 px wide the column collapses to icons (assets/control_room.css).
    column: rx.Component = rx.box(
        bar,
        width=SIDEBAR_WIDTH,
        min_width=SIDEBAR_WIDTH,
        align_self="stretch",
        background=rx.color("gray", 2),
        border_right=f"1px solid {rx.color('gray', 5)}",
        class_name="app-sidebar",
        id="sidebar",
    )
    return column


def _project_option(project: ProjectChoice) -> rx.Component:
    item: rx.Component = rx.select.item(project.name, value=project.id)
    return item


def switcher(reload: Sequence[EventType[()]]) -> rx.Component:
    """Project and environment selects; a change reloads the page's data."""
    box: rx.Component = rx.hstack(
        rx.select.root(
            rx.select.trigger(placeholder="Project", variant="surface", min_width="180px", id="project-switcher"),
            rx.select.content(rx.foreach(SessionState.projects, _project_option)),
            value=SessionState.project_id,
            on_change=lambda value: [SessionState.set_project(value), *reload],
            size="2",
        ),
        rx.segmented_control.root(
            rx.segmented_control.item("All", value=ALL),
            *(rx.segmented_control.item(env, value=env) for env in ENVIRONMENTS),
            value=SessionState.environment,
            on_change=lambda value: [SessionState.set_environment(value), *reload],
            size="1",
            id="environment-switcher",
        ),
        spacing="3",
        align="center",
    )
    return box


def page_shell(title: str, content: rx.Component, reload: Sequence[EventType[()]]) -> rx.Component:
    """Sidebar on the left; a top bar with the page title and the switcher; the page below."""
    shell: rx.Component = rx.theme(
        rx.hstack(
            sidebar(),
            rx.box(
                rx.hstack(
                    rx.heading(title, size="5", weight="bold", id="page-title"),
                    rx.spacer(),
                    switcher(reload),
                    notification_bell(),
                    align="center",
                    wrap="wrap",
                    class_name="top-bar",
                    padding="14px 28px",
                    border_bottom=f"1px solid {rx.color('gray', 4)}",
                    background=rx.color("gray", 1),
                    position="sticky",
                    top="0",
                    z_index="5",
                ),
                rx.cond(
                    SessionState.session_ended,
                    rx.callout(
                        rx.hstack(
                            rx.text(
                                "Your session ended (it expired or was signed out). Nothing here updates "
                                "until you sign in again."
                            ),
                            rx.link(rx.button("Sign in", size="1"), href=routes.LOGIN),
                            align="center",
                            spacing="3",
                        ),
                        icon="lock",
                        color_scheme="amber",
                        margin="16px 28px 0",
                        id="session-ended",
                    ),
                ),
                rx.box(content, padding="24px 28px 48px", class_name="page-content"),
                flex="1",
                min_width="0",
            ),
            spacing="0",
            align="start",
            width="100%",
            min_height="100vh",
        ),
        rx.script(src="/keyboard.js"),  # "/" focuses search; j / k / Enter walk table rows
        rx.cond(rx.State.is_hydrated, rx.fragment(), live_ticker(int(LOAD_WATCH_SECONDS * 1000),
                                                                 SessionState.reload_if_stuck)),
        **THEME,
    )
    return shell


def public_shell(content: rx.Component) -> rx.Component:
    """Pages shown before signing in: centred, no navigation."""
    shell: rx.Component = rx.theme(
        rx.center(content, min_height="100vh", width="100%", background=rx.color("gray", 2)),
        **THEME,
    )
    return shell


def layout(
    *, route: str, title: str, on_load: EventType[()] | Sequence[EventType[()]] | None = None, public: bool = False
) -> Callable[[Callable[[], rx.Component]], Callable[[], rx.Component]]:
    """Register a page at ``route`` whose content is wrapped in the shell (one decorator per page).

    ``on_load`` runs when the page opens and again when the project or environment changes; each
    page's load event checks the session first and sends the browser to sign in when there is none.
    """
    events: list[EventType[()]] = (
        [] if on_load is None else list(on_load) if isinstance(on_load, Sequence) else [on_load]
    )

    def register(content: Callable[[], rx.Component]) -> Callable[[], rx.Component]:
        def page() -> rx.Component:
            return public_shell(content()) if public else page_shell(title, content(), events)

        page.__name__ = content.__name__
        page.__module__ = content.__module__
        rx.page(route=route, title=f"{title} · {PRODUCT_NAME}", on_load=events or None)(page)
        return content

    return register


# A tab: its label (a text, or a component such as counted_label), its value and its panel.
Tab = tuple[str | rx.Component, str, rx.Component]


def page_tabs(tabs: Sequence[Tab], value: rx.Var[str], on_change: EventType[str]) -> rx.Component:
    """A detail page's tabs: one trigger (id ``tab-<value>``) and one panel per tab, the open one held in state."""
    root: rx.Component = rx.tabs.root(
        rx.tabs.list(*(rx.tabs.trigger(label, value=key, id=f"tab-{key}") for label, key, _ in tabs)),
        *(rx.tabs.content(panel, value=key, padding_top="16px") for _, key, panel in tabs),
        value=value,
        on_change=on_change,
        width="100%",
    )
    return root


def section_column(*sections: rx.Component) -> rx.Component:
    """A page's content, a tab's panel or a large card's body: its sections one under another, full width, a
    spacing-4 gap between them."""
    column: rx.Component = rx.vstack(*sections, spacing="4", width="100%")
    return column


def counted_label(label: str, count: rx.Var[int]) -> rx.Component:
    """A tab's label with the number of things under it beside it."""
    row: rx.Component = rx.hstack(label, rx.badge(count, size="1", variant="soft"), **ROW)
    return row
