"""API tokens page (from the user menu): create a token with an expiry and a role ceiling, shown once;
the person's tokens with when each was last used; revoke."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import choice_select, error_callout, form_dialog
from control_room.components.layout import layout
from control_room.components.live import live_intro, live_ticker
from control_room.components.notice import empty_note
from control_room.components.revoke import revoke_token_dialog
from control_room.components.table_rows import body_row, text_cell
from control_room.components.tables import data_table
from control_room.state.api_tokens import CEILINGS, LIFETIMES, ApiTokensState

STATUS_COLORS = {"active": "grass", "expired": "amber", "revoked": "gray"}


def _field(label: str, control: rx.Component) -> rx.Component:
    """A field of the create form: its small grey label above its control."""
    field: rx.Component = rx.vstack(
        rx.text(label, size="1", weight="medium", color_scheme="gray"), control, spacing="1"
    )
    return field


def _select(label: str, choices: dict[str, str], value: rx.Var[str], on_change: Any, select_id: str) -> rx.Component:
    control = choice_select(value, list(choices.items()), on_change, select_id, "auto", min_width="170px")
    return _field(label, control)


def _create_form() -> rx.Component:
    form: rx.Component = rx.card(
        rx.form(
            rx.vstack(
                rx.text("New token", size="3", weight="bold"),
                rx.hstack(
                    _field("Name", rx.input(name="name", id="token-name", placeholder="e.g. ci-nightly",
                                            required=True, max_length=100, size="2", width="240px")),
                    _select("Expires", LIFETIMES, ApiTokensState.lifetime, ApiTokensState.set_lifetime,
                            "token-lifetime"),
                    _select("Role ceiling", CEILINGS, ApiTokensState.ceiling, ApiTokensState.set_ceiling,
                            "token-ceiling"),
                    rx.button(rx.icon("plus", size=14), "Create token", type="submit", size="2",
                              loading=ApiTokensState.creating, id="token-create"),
                    spacing="3",
                    align="end",
                    wrap="wrap",
                ),
                rx.text("A role ceiling limits what requests with the token may do, whatever your roles.",
                        size="1", color_scheme="gray"),
                error_callout(ApiTokensState.form_error, "token-form-error"),
                spacing="3",
            ),
            on_submit=ApiTokensState.create,
        ),
        width="100%",
    )  # fmt: skip
    return form


def _row(token: Any) -> rx.Component:
    status_color: Any = rx.match(token.status, *STATUS_COLORS.items(), "gray")
    row: rx.Component = body_row(
        text_cell(token.name, weight="medium", size="2"),
        text_cell(token.prefix, size="2", class_name="mono"),
        rx.table.cell(rx.cond(token.ceiling != "", rx.badge(token.ceiling, variant="surface", size="1"),
                              rx.text("—", size="2", color_scheme="gray"))),
        text_cell(token.created, size="2", white_space="nowrap"),
        text_cell(token.expires, size="2", white_space="nowrap"),
        text_cell(token.last_used, size="2", white_space="nowrap", class_name="token-last-used"),
        rx.table.cell(rx.badge(token.status, color_scheme=status_color, variant="soft", size="1")),
        rx.table.cell(rx.cond(token.status == "active",
                              rx.button(rx.icon("ban", size=12), "Revoke", size="1", variant="soft",
                                        color_scheme="red", on_click=ApiTokensState.ask_revoke(token.name),
                                        class_name="revoke-token"))),
        data_token=token.name,
        data_status=token.status,
    )  # fmt: skip
    return row


def _table() -> rx.Component:
    heads = ["Name", "Prefix", "Ceiling", "Created (UTC)", "Expires (UTC)", "Last used", "Status", ""]
    table: rx.Component = data_table(heads, rx.foreach(ApiTokensState.rows, _row), "api-tokens-table")
    return table


def _created_dialog() -> rx.Component:
    dialog: rx.Component = form_dialog(
        rx.dialog.title("Token ", ApiTokensState.created_name, " created"),
        rx.dialog.description(
            "Copy it now: it is shown this once and only its hash is stored. "
            "Send it in the header Authorization: Bearer <token>.",
            size="2",
        ),
        rx.hstack(
            rx.code(ApiTokensState.created_token, size="2", id="created-token", class_name="mono",
                    style={"word_break": "break-all"}),
            rx.icon_button(rx.icon("copy", size=14), size="1", variant="soft",
                           on_click=rx.set_clipboard(ApiTokensState.created_token), aria_label="Copy token"),
            spacing="2",
            align="center",
            margin_top="12px",
        ),
        rx.hstack(
            rx.dialog.close(rx.button("Done", id="created-token-done")),
            justify="end",
            margin_top="16px",
        ),
        is_open=ApiTokensState.created_token != "", on_open_change=ApiTokensState.forget_created,
    )  # fmt: skip
    return dialog


@layout(route=routes.API_TOKENS, title="API tokens", on_load=ApiTokensState.load)
def api_tokens_page() -> rx.Component:
    """The create form, then the person's tokens."""
    page: rx.Component = rx.vstack(
        live_intro(rx.text("Your tokens for the HTTP API and scripts (lhu_…); they act as you, within their ceiling.",
                           size="2", color_scheme="gray"), ApiTokensState.updated_at, ~ApiTokensState.loaded),
        _create_form(),
        error_callout(ApiTokensState.error, "api-tokens-error"),
        rx.cond(
            ApiTokensState.loaded & (ApiTokensState.rows.length() == 0),
            empty_note("You have no API tokens yet.", padding="32px"),
            _table(),
        ),
        _created_dialog(),
        revoke_token_dialog(ApiTokensState, ApiTokensState.revoke_target,
                            "Its next request is refused (401). This cannot be undone; create a new token if needed.",
                            "revoke-token-confirm"),
        live_ticker(10_000, ApiTokensState.tick),
        spacing="4",
        width="100%",
    )  # fmt: skip
    return page
