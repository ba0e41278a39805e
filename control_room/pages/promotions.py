"""Promotions: the pipeline view (dev | staging | prod, each job's version in each, a waiting request with its
checks as ticks), the requests list, and one request's page with its checks, evidence links, decisions and
Approve/Reject for the gate's approvers."""

from __future__ import annotations

from typing import Any

import reflex as rx

from control_room import routes
from control_room.components.forms import error_callout
from control_room.components.headings import page_heading
from control_room.components.layout import layout
from control_room.components.live import live_ticker, updated_label
from control_room.components.paging import keyset_pager
from control_room.components.table_rows import body_row, number_cell, text_cell
from control_room.components.tables import data_table
from control_room.state.promotions import PromotionsState, PromotionState
from control_room.state.rows import CheckRow, DecisionRow, EvidenceRow, PipelineRow, RequestRow, StageCell

LIVE_MS = 3000
VIEW: Any = PromotionState.view  # a dataclass var, typed Any for mypy (Reflex's Field descriptor)


def _cell(cell: StageCell) -> rx.Component:
    item: rx.Component = rx.table.cell(
        rx.vstack(
            rx.hstack(
                rx.text(cell.version, size="3", weight="bold", class_name="tabular"),
                rx.cond(cell.gate != "", rx.badge(rx.icon("shield-check", size=12), cell.gate, size="1",
                                                  variant="soft", color_scheme="indigo")),
                spacing="2", align="center",
            ),
            rx.cond(cell.request_id != "", rx.link(
                rx.badge(cell.ticks, " ", cell.request_label, size="1", variant="surface",
                         color_scheme=cell.request_tone),
                href="/promotions/" + cell.request_id, class_name="pipeline-request",
            )),
            spacing="1",
        ),
        class_name="pipeline-" + cell.environment,
    )  # fmt: skip
    return item


def _pipeline_row(row: PipelineRow) -> rx.Component:
    item: rx.Component = rx.table.row(
        rx.table.cell(rx.link(row.job, href="/jobs/" + row.template_id, weight="medium"),
                      rx.text("latest ", row.latest, size="1", color_scheme="gray")),
        rx.foreach(row.cells, _cell),
        class_name="pipeline-row", id="pipeline-" + row.job,
    )  # fmt: skip
    return item


def _request_row(row: RequestRow) -> rx.Component:
    item: rx.Component = body_row(
        rx.table.cell(rx.link(row.job, " ", row.version, href="/promotions/" + row.id, weight="medium")),
        text_cell(row.route, size="2"),
        rx.table.cell(rx.badge(row.status, color_scheme=row.tone, variant="soft")),
        number_cell(row.checks),
        number_cell(row.approvals),
        text_cell(row.requested_by, size="1"),
        text_cell(row.created_at, size="1", color_scheme="gray"),
        class_name="promotion-row",
    )  # fmt: skip
    return item


@layout(route=routes.PROMOTIONS, title="Promotions", on_load=PromotionsState.open_page)
def promotions_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        page_heading("Promotions", updated_label(PromotionsState.updated_at, PromotionsState.is_loading), rx.spacer()),
        rx.text("A job version moves dev → staging → prod only through the checks and approvals of the gate into "
                "each environment; a gated environment runs only its deployed version.", size="2",
                color_scheme="gray"),
        error_callout(PromotionsState.error, size="2"),
        data_table(("Job", "dev", "staging", "prod"), rx.foreach(PromotionsState.pipeline, _pipeline_row),
                   "pipeline-table", plain=True),
        rx.hstack(
            rx.heading("Requests", size="4"),
            rx.spacer(),
            rx.select(["all", "pending", "promoted", "rejected", "cancelled", "superseded"], default_value="all",
                      on_change=PromotionsState.set_status, id="promotions-status"),
            width="100%", align="center", margin_top="12px",
        ),
        data_table(("Job", "Route", "Status", "Checks", "Approvals", "Requested by", "Opened (UTC)"),
                   rx.foreach(PromotionsState.requests, _request_row), "promotions-table", plain=True),
        rx.cond(PromotionsState.loaded & (PromotionsState.requests.length() == 0),
                rx.text("No promotion request yet: open a job and request one, or run "
                        "`lakehouse promote JOB --version N --to staging`.", color_scheme="gray",
                        id="promotions-empty")),
        keyset_pager(PromotionsState),
        live_ticker(LIVE_MS, PromotionsState.tick),
        spacing="4", width="100%",
    )  # fmt: skip
    return content


def _evidence(link: EvidenceRow) -> rx.Component:
    item: rx.Component = rx.cond(
        link.href != "",
        rx.link(link.label, href=link.href, size="1", class_name="evidence-link"),
        rx.text(link.label, size="1", color_scheme="gray"),
    )
    return item


def _check(check: CheckRow) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.cond(check.passed, rx.icon("circle-check", color=rx.color("grass", 9), size=20),
                rx.icon("circle-x", color=rx.color("red", 9), size=20)),
        rx.vstack(
            rx.hstack(rx.text(check.label, size="2", weight="medium"),
                      rx.text(check.summary, size="1", color_scheme="gray"), spacing="2", align="baseline"),
            rx.hstack(rx.foreach(check.evidence, _evidence), spacing="3", wrap="wrap"),
            spacing="1",
        ),
        spacing="3", align="start", width="100%",
        class_name=rx.cond(check.passed, "promotion-check check-passed", "promotion-check check-failed"),
        id="check-" + check.name.replace(":", "-"),
    )  # fmt: skip
    return item


def _decision(decision: DecisionRow) -> rx.Component:
    item: rx.Component = rx.hstack(
        rx.badge(decision.decision, variant="soft",
                 color_scheme=rx.match(decision.decision, ("approve", "green"), ("reject", "red"), "gray")),
        rx.text(decision.actor, size="2", weight="medium"),
        rx.text(decision.comment, size="2"),
        rx.text(decision.at, size="1", color_scheme="gray"),
        rx.cond(decision.note != "", rx.badge(decision.note, color_scheme="amber", variant="outline", size="1")),
        spacing="3", align="center", class_name="promotion-decision",
    )  # fmt: skip
    return item


def _decide_box() -> rx.Component:
    box: rx.Component = rx.cond(
        VIEW.status == "pending",
        rx.cond(
            VIEW.may_decide,
            rx.vstack(
                rx.text_area(placeholder="Comment (required to reject)", value=PromotionState.comment,
                             on_change=PromotionState.set_comment, width="100%", id="decision-comment"),
                rx.hstack(
                    rx.button(rx.icon("check", size=16), "Approve", color_scheme="green",
                              on_click=PromotionState.decide("approve"), id="promotion-approve"),
                    rx.button(rx.icon("x", size=16), "Reject", color_scheme="red", variant="soft",
                              on_click=PromotionState.decide("reject"), id="promotion-reject"),
                    spacing="3",
                ),
                spacing="2", width="100%", max_width="640px",
            ),
            rx.text(VIEW.refusal, size="2", color_scheme="gray", id="decision-refusal"),
        ),
    )  # fmt: skip
    return box


@layout(route=routes.PROMOTION_DETAIL, title="Promotion request", on_load=PromotionState.open_page)
def promotion_page() -> rx.Component:
    content: rx.Component = rx.vstack(
        rx.link(rx.hstack(rx.icon("arrow-left", size=14), rx.text("Promotions", size="2"), spacing="1"),
                href=routes.PROMOTIONS),
        page_heading(
            VIEW.title,
            rx.badge(VIEW.status, color_scheme=VIEW.tone, size="2", id="promotion-status"),
            rx.spacer(),
            rx.link("Job page", href=VIEW.job_href, size="2"),
            heading_id="promotion-title",
        ),
        error_callout(PromotionState.error, "promotion-error", size="2"),
        rx.cond(PromotionState.notice != "", rx.callout(PromotionState.notice, icon="info", color_scheme="indigo")),
        rx.cond(VIEW.outcome != "", rx.callout(VIEW.outcome, icon="flag", color_scheme=VIEW.tone,
                                               id="promotion-outcome")),
        rx.grid(
            rx.foreach(VIEW.facts, lambda fact: rx.vstack(rx.text(fact[0], size="1", color_scheme="gray"),
                                                      rx.text(fact[1], size="2"), spacing="0")),
            columns="3", spacing="4", width="100%",
        ),
        rx.heading("Checks", size="4", margin_top="8px"),
        rx.vstack(rx.foreach(VIEW.checks, _check), spacing="3", width="100%", id="promotion-checks"),
        rx.heading("Decisions", size="4", margin_top="8px"),
        rx.cond(VIEW.decisions.length() > 0,
                rx.vstack(rx.foreach(VIEW.decisions, _decision), spacing="2", id="promotion-decisions"),
                rx.text("No approval or rejection yet.", size="2", color_scheme="gray")),
        _decide_box(),
        live_ticker(LIVE_MS, PromotionState.tick),
        spacing="4", width="100%",
    )  # fmt: skip
    return content
