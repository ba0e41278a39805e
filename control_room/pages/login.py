"""Sign-in page: email and password (local account, or Supabase Auth when configured)."""

from __future__ import annotations

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.layout import layout
from control_room.components.post_form import post_form
from control_room.state.auth import LoginState


@layout(route=routes.LOGIN, title="Sign in", on_load=LoginState.open_login, public=True)
def login_page() -> rx.Component:
    """A centred card with the sign-in form."""
    card: rx.Component = rx.card(
        rx.vstack(
            rx.hstack(
                rx.box(rx.icon("layers", size=20, color="white"), class_name="brand-mark"),
                rx.vstack(
                    rx.heading("Lakehouse Control Room", size="4"),
                    rx.text("Sign in to watch and steer your runs", size="2", color_scheme="gray"),
                    spacing="1",
                ),
                spacing="3",
                align="center",
            ),
            # A plain form post (no websocket event): the server answers with the HttpOnly session
            # cookie and a redirect, so the token never passes through page scripts.
            post_form(
                rx.vstack(
                    rx.text("Email", size="2", weight="medium", as_="label", html_for="login-email"),
                    rx.input(
                        name="email", id="login-email", type="email", placeholder="you@company.com",
                        auto_complete="username", required=True, size="3", width="100%",
                    ),
                    rx.text("Password", size="2", weight="medium", as_="label", html_for="login-password"),
                    rx.input(
                        name="password", id="login-password", type="password", auto_complete="current-password",
                        required=True, size="3", width="100%",
                    ),
                    rx.el.input(type="hidden", name="next", value=LoginState.next_path),
                    error_callout(LoginState.error, "login-error", width="100%"),
                    rx.button(
                        rx.icon("log-in", size=16), "Sign in", type="submit", size="3", width="100%",
                        id="login-submit",
                    ),
                    spacing="2",
                    width="100%",
                ),
                action=routes.WEB_SIGN_IN,
                width="100%",
            ),
            rx.text(
                rx.cond(
                    LoginState.supabase,
                    "Accounts are managed by Supabase Auth.",
                    "Local accounts: the first admin comes from `lakehouse users create-admin` "
                    "(or the demo password printed by `make run`).",
                ),
                size="1",
                color_scheme="gray",
            ),
            spacing="5",
            width="100%",
        ),
        size="4",
        width="420px",
    )  # fmt: skip
    return card
