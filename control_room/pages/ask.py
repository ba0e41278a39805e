"""Ask: a question in plain words, the SQL to review and edit, then its result table and an automatic chart."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.layout import layout
from control_room.components.tables import result_table
from control_room.state.ask import AskState

# A dataclass var, typed Any: mypy resolves Reflex's Field descriptor for it to ArrayVar.
TRANSLATION: Any = AskState.translation

PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
EXAMPLES = ("top 5 customers by total order amount", "orders by status", "total amount by country",
            "how many orders in March 2026")  # fmt: skip


def _result() -> rx.Component:
    box: rx.Component = rx.vstack(
        rx.cond(AskState.has_chart, rx.card(rx.plotly.basic(data=AskState.figure, config=PLOT_CONFIG, width="100%"),
                                            width="100%", id="ask-chart")),
        rx.box(
            result_table(AskState.columns, AskState.rows, width="100%", id="ask-table"),
            max_height="360px", overflow_y="auto", width="100%",
        ),
        spacing="3", width="100%",
    )  # fmt: skip
    return box


@layout(route=routes.ASK, title="Ask", on_load=AskState.open_page)
def ask_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        rx.heading("Ask", size="6"),
        rx.text("A question about the project's datasets becomes SQL you review before it runs as a DuckDB SQL "
                "task. Only datasets you may read are used; nothing is written.", size="2", color_scheme="gray"),
        rx.hstack(
            rx.input(value=AskState.question, on_change=AskState.set_question, placeholder=EXAMPLES[0],
                     width="100%", id="ask-question"),
            rx.button("Ask", on_click=AskState.ask, loading=AskState.busy, id="ask-submit"),
            width="100%",
        ),
        rx.hstack(rx.text("Try:", size="1", color_scheme="gray"),
                  *[rx.link(example, size="1", on_click=AskState.set_question(example), cursor="pointer")
                    for example in EXAMPLES], spacing="3", wrap="wrap"),
        error_callout(AskState.error, "ask-error", size="2"),
        rx.cond(TRANSLATION.question_id != "", rx.cond(
            TRANSLATION.refused,
            rx.callout(TRANSLATION.message, icon="circle-help", color_scheme="amber", id="ask-refusal"),
            rx.vstack(
                rx.hstack(rx.text("SQL to review", weight="bold", size="2"),
                          rx.badge(TRANSLATION.provider, variant="surface"), spacing="2", align="center"),
                rx.text_area(value=AskState.sql, on_change=AskState.set_sql, font_family="monospace",
                             font_size="13px", rows="14", width="100%", id="ask-sql"),
                rx.hstack(
                    rx.cond(AskState.can_operate, rx.button(rx.icon("play", size=14), "Run", on_click=AskState.run,
                                                         loading=AskState.busy, id="ask-run"),
                            rx.text("Operators run SQL; you can review and copy it.", size="1", color_scheme="gray")),
                    rx.cond(AskState.run_id != "", rx.hstack(
                        rx.link("run ", AskState.run_id.to(str)[:8], href=routes.RUNS + "/" + AskState.run_id),
                        rx.badge(AskState.run_status, id="ask-run-status"), spacing="2", align="center")),
                    rx.spacer(),
                    rx.text("Was this SQL right?", size="1", color_scheme="gray"),
                    rx.button("Correct", size="1", variant="soft", color_scheme="green",
                              on_click=AskState.give_feedback(True), id="ask-correct"),
                    rx.button("Wrong (my edit fixes it)", size="1", variant="soft", color_scheme="red",
                              on_click=AskState.give_feedback(False), id="ask-wrong"),
                    width="100%", align="center",
                ),
                rx.cond(AskState.feedback_given != "",
                        rx.text(AskState.feedback_given, size="1", color_scheme="green")),
                spacing="2", width="100%",
            ),
        )),
        rx.cond(AskState.columns.length() > 0, _result()),
        spacing="4", width="100%", id="ask-page",
    )  # fmt: skip
    return content
