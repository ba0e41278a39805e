"""The dashboard file format: datasets (SQL on the control plane's views or the warehouse), charts, filters, layout."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from control_room.bundle.source import published_file_config

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
CHART_TYPES = ("bar", "line", "area", "scatter", "pie", "histogram", "table", "number")
TIME_RANGES = ("24h", "7d", "14d", "30d", "90d")
REFRESH_CHOICES = (0, 10, 30, 60, 300)


class Dataset(BaseModel):
    """One query. Control-plane SQL reads the ops schema as the viewer (RLS applies) and may use the
    parameters :project_id, :since, :until and each filter's name (null when the filter is "all")."""

    model_config = published_file_config("Dataset")

    source: Literal["control_plane", "warehouse"] = Field(
        "control_plane", description="control_plane: ops views read with the viewer's rights; warehouse: DuckDB."
    )
    sql: str = Field(min_length=1, max_length=20_000, description="One SELECT statement.")
    description: str = ""
    time_grain: Literal["hour", "day", "week", "month"] | None = Field(
        None,
        description="The bucket of the time column charts use as x (e.g. date_trunc('month', ...)): axis ticks "
        "and labels follow it (a month reads 2026-03). Read from the values when not given.",
    )


class Filter(BaseModel):
    """A dashboard-wide filter: a select whose value is bound as the SQL parameter of the same name."""

    model_config = published_file_config("Filter")

    name: Name
    label: str = Field(min_length=1, max_length=80)
    options: list[str] = Field(default_factory=list, description="Fixed choices; or take them from a dataset.")
    dataset: Name | None = Field(None, description="A dataset whose `column` lists the choices.")
    column: Name | None = None


class Chart(BaseModel):
    """One chart drawn with plotly from a dataset's columns."""

    model_config = published_file_config("Chart")

    id: Name
    title: str = Field(min_length=1, max_length=120)
    type: Literal["bar", "line", "area", "scatter", "pie", "histogram", "table", "number"]
    dataset: Name
    x: Name | None = Field(None, description="Column on the x axis (labels for pie).")
    y: list[Name] = Field(default_factory=list, description="Columns drawn as series (values for pie/number).")
    color: Name | None = Field(None, description="Column that splits the series.")
    cross_filter: Name | None = Field(None, description="Clicking a point sets this filter to its x value.")
    description: str = ""

    @model_validator(mode="after")
    def _columns_needed(self) -> Chart:
        if self.type in ("bar", "line", "area", "scatter", "pie") and (self.x is None or not self.y):
            raise ValueError(f"a {self.type} chart needs x and at least one y column")
        if self.type == "number" and len(self.y) != 1:
            raise ValueError("a number chart needs exactly one y column")
        return self


class DashboardFile(BaseModel):
    """A dashboard: what it shows (datasets, charts), how it is filtered and laid out."""

    model_config = published_file_config("Lakehouse Control Room dashboard")

    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    time_range: Literal["24h", "7d", "14d", "30d", "90d"] = "7d"
    refresh_seconds: Literal[0, 10, 30, 60, 300] = Field(60, description="Auto-refresh period (0: off).")
    filters: list[Filter] = Field(default_factory=list)
    datasets: dict[Name, Dataset] = Field(min_length=1)
    charts: list[Chart] = Field(min_length=1)
    layout: list[list[Name]] = Field(
        default_factory=list, description="Rows of chart ids, left to right (default: two charts a row)."
    )

    @model_validator(mode="after")
    def _references(self) -> DashboardFile:
        chart_ids = [chart.id for chart in self.charts]
        if len(set(chart_ids)) != len(chart_ids):
            raise ValueError("chart ids must be unique")
        filter_names = {f.name for f in self.filters}
        for chart in self.charts:
            if chart.dataset not in self.datasets:
                raise ValueError(f"chart {chart.id!r} uses dataset {chart.dataset!r}, which is not defined")
            if chart.cross_filter is not None and chart.cross_filter not in filter_names:
                raise ValueError(f"chart {chart.id!r} cross-filters {chart.cross_filter!r}, which is not a filter")
        for item in self.filters:
            if item.dataset is not None and item.dataset not in self.datasets:
                raise ValueError(f"filter {item.name!r} takes options from {item.dataset!r}, which is not defined")
        for row in self.layout:
            for chart_id in row:
                if chart_id not in chart_ids:
                    raise ValueError(f"layout names chart {chart_id!r}, which is not defined")
        return self

    def rows(self) -> list[list[Chart]]:
        """Charts in layout order; charts the layout omits follow, two a row."""
        by_id = {chart.id: chart for chart in self.charts}
        placed = [[by_id[c] for c in row] for row in self.layout]
        named = {c for row in self.layout for c in row}
        rest = [chart for chart in self.charts if chart.id not in named]
        placed.extend(rest[i : i + 2] for i in range(0, len(rest), 2))
        return [row for row in placed if row]


def dashboard_json_schema() -> dict[str, Any]:
    """The published JSON Schema of a dashboard file (spec/dashboard.schema.json)."""
    return DashboardFile.model_json_schema(mode="validation")
