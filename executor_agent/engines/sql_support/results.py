"""Stream a query's result, batch by batch, into a Parquet file (and optionally CSV) plus a JSON preview.

Nothing holds the whole result: batches are gathered only up to one row group (``row_group_rows``)
and written out, so memory stays bounded by the row group size whatever the result's length. Row
groups are what the control room's rows API seeks by, so a page is read without reading the file.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from executor_agent.engines.base import EngineError
from executor_agent.engines.sql_support.jsonable import column_descriptions, rows_as_json

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
CSV_CONTENT_TYPE = "text/csv"
PREVIEW_CONTENT_TYPE = "application/json"
OUTPUT_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class OutputOptions:
    """How results are written: Parquet always, CSV on request, and the preview's length."""

    formats: tuple[str, ...] = ("parquet",)
    preview_rows: int = 100
    row_group_rows: int = 65_536
    compression: str = "zstd"

    @property
    def csv(self) -> bool:
        return "csv" in self.formats


@dataclass(frozen=True)
class ResultFile:
    """One written file and the artifact it becomes."""

    path: Path
    name: str
    content_type: str


@dataclass
class ResultFiles:
    """What a finished result produced."""

    rows: int
    columns: list[dict[str, str]]
    row_groups: int
    files: list[ResultFile] = field(default_factory=list)

    @property
    def bytes_written(self) -> int:
        return sum(f.path.stat().st_size for f in self.files)


class OutputCapExceeded(EngineError):
    """The written result grew past the task's max_output_bytes cap."""


class ResultWriter:
    """Writes one statement's result; ``write`` each batch, then ``close`` (or ``abort`` on failure)."""

    def __init__(
        self,
        directory: Path,
        name: str,
        schema: pa.Schema,
        options: OutputOptions,
        *,
        max_output_bytes: int | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.options = options
        self.max_output_bytes = max_output_bytes
        self.rows = 0
        self.row_groups = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._preview: list[pa.RecordBatch] = []
        self._preview_rows = 0
        self.parquet_file = ResultFile(directory / f"{name}.parquet", f"{name}.parquet", PARQUET_CONTENT_TYPE)
        self.preview_file = ResultFile(directory / f"{name}.preview.json", f"{name}.preview.json", PREVIEW_CONTENT_TYPE)
        self.csv_file = ResultFile(directory / f"{name}.csv", f"{name}.csv", CSV_CONTENT_TYPE) if options.csv else None
        self._parquet = pq.ParquetWriter(self.parquet_file.path, schema, compression=options.compression)
        self._csv: pa_csv.CSVWriter | None = None
        if self.csv_file is not None:
            _check_csv_types(schema)
            self._csv = pa_csv.CSVWriter(self.csv_file.path, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        """Add one batch of rows (its schema must be the writer's)."""
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)
        self.rows += batch.num_rows
        if self._preview_rows < self.options.preview_rows:
            head = batch.slice(0, self.options.preview_rows - self._preview_rows)
            self._preview.append(head)
            self._preview_rows += head.num_rows
        if self._csv is not None:
            self._csv.write_batch(batch)
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.options.row_group_rows:
            self._flush(self.options.row_group_rows)

    def write_all(self, batches: Iterable[pa.RecordBatch]) -> None:
        for batch in batches:
            self.write(batch)

    def close(self) -> ResultFiles:
        """Write what is pending, the footer and the preview; returns the files to upload."""
        while self._pending_rows:
            self._flush(self.options.row_group_rows)
        self._parquet.close()
        if self._csv is not None:
            self._csv.close()
        self._check_output_cap()
        columns = column_descriptions(self.schema)
        preview = pa.Table.from_batches(self._preview, schema=self.schema) if self._preview else None
        document: dict[str, Any] = {
            "columns": columns,
            "rows": rows_as_json(preview) if preview is not None else [],
            "total_rows": self.rows,
            "truncated": self.rows > self._preview_rows,
        }
        self.preview_file.path.write_text(json.dumps(document, allow_nan=False), encoding="utf-8")
        files = [self.parquet_file, self.preview_file]
        if self.csv_file is not None:
            files.append(self.csv_file)
        return ResultFiles(rows=self.rows, columns=columns, row_groups=self.row_groups, files=files)

    def abort(self) -> None:
        """Close and delete what was written: a failed or cancelled statement leaves no partial result."""
        for closer in (self._parquet.close, self._csv.close if self._csv is not None else None):
            if closer is not None:
                # The files are deleted next; a failed close changes nothing.
                with contextlib.suppress(OSError, pa.ArrowException):
                    closer()
        for result_file in (self.parquet_file, self.csv_file, self.preview_file):
            if result_file is not None:
                result_file.path.unlink(missing_ok=True)

    def _flush(self, limit: int) -> None:
        """Write up to ``limit`` pending rows as one row group."""
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        head, rest = table.slice(0, limit), table.slice(limit)
        self._parquet.write_table(head, row_group_size=limit)
        self.row_groups += 1
        self._pending = rest.to_batches()
        self._pending_rows = rest.num_rows
        self._check_output_cap()

    def _check_output_cap(self) -> None:
        if self.max_output_bytes is None:
            return
        written = sum(os.path.getsize(f.path) for f in (self.parquet_file, self.csv_file) if f and f.path.exists())
        if written > self.max_output_bytes:
            raise OutputCapExceeded(
                f"the result grew past the max_output_bytes cap of {self.max_output_bytes} bytes "
                f"({written} bytes written after {self.rows} rows); select fewer rows or columns, "
                "or ask an admin to raise the cap"
            )


def _check_csv_types(schema: pa.Schema) -> None:
    nested = [f"{f.name} ({f.type})" for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise EngineError(
            f"output.formats: CSV cannot hold the nested column(s) {', '.join(nested)}; "
            'drop "csv" from output.formats (Parquet keeps them) or cast them to varchar in the query'
        )


def options_from_spec(value: Any, field_name: str = "output") -> OutputOptions:
    """Read the task spec's ``output`` object; EngineError names the offending field."""
    if value is None:
        return OutputOptions()
    if not isinstance(value, dict):
        raise EngineError(f'{field_name}: must be an object such as {{"formats": ["parquet", "csv"]}}')
    unknown = set(value) - {"formats", "preview_rows", "row_group_rows"}
    if unknown:
        raise EngineError(f"{field_name}: unknown field(s) {', '.join(sorted(unknown))}")
    formats: Sequence[Any] = value.get("formats", ["parquet"])
    if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
        raise EngineError(f'{field_name}.formats: must be a list such as ["parquet", "csv"]')
    bad = [f for f in formats if f not in OUTPUT_FORMATS]
    if bad:
        raise EngineError(f"{field_name}.formats: unknown format(s) {', '.join(bad)}; use parquet and/or csv")
    preview_rows = _positive_int(value.get("preview_rows", 100), f"{field_name}.preview_rows", low=0, high=10_000)
    row_group_rows = _positive_int(
        value.get("row_group_rows", 65_536), f"{field_name}.row_group_rows", low=1_000, high=1_048_576
    )
    return OutputOptions(
        formats=tuple(dict.fromkeys(["parquet", *formats])), preview_rows=preview_rows, row_group_rows=row_group_rows
    )


def _positive_int(value: Any, field_name: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise EngineError(f"{field_name}: must be a whole number between {low} and {high}")
    return int(value)
