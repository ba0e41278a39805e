"""Read a Delta table into a Spark DataFrame at a version or timestamp, without Delta's Spark jars.

Delta's Spark connector cannot be fetched on these machines (no Maven), so delta-rs resolves the
table's snapshot to its Parquet files (``DeltaTable.file_uris()``) and Spark reads those files.
This is exact only for tables whose snapshot is fully described by its data files: deletion
vectors and column mapping change what a file means, so such tables are refused.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Reader features that make the Parquet files alone an incorrect view of the snapshot.
UNSUPPORTED_READER_FEATURES = frozenset({"deletionVectors", "columnMapping"})


class DeltaReadError(Exception):
    """The table cannot be read this way; the message says why and what to do."""


def delta_snapshot_files(
    table_uri: str | Path,
    *,
    version: int | None = None,
    timestamp: datetime | str | None = None,
    storage_options: dict[str, str] | None = None,
) -> tuple[list[str], Any]:
    """The data file URIs and the arrow schema of the table's snapshot at ``version`` or ``timestamp``."""
    from deltalake import DeltaTable

    if version is not None and timestamp is not None:
        raise DeltaReadError("give a version or a timestamp, not both")
    table = DeltaTable(str(table_uri), storage_options=storage_options)
    if version is not None:
        table.load_as_version(version)
    elif timestamp is not None:
        table.load_as_version(timestamp)
    protocol = table.protocol()
    blocking = sorted(set(protocol.reader_features or ()) & UNSUPPORTED_READER_FEATURES)
    if blocking:
        raise DeltaReadError(
            f"Delta table {table_uri} uses {', '.join(blocking)}; its Parquet files alone do not give the "
            "snapshot. Read it with deltalake (DeltaTable.to_pyarrow_table) instead."
        )
    return table.file_uris(), table.schema().to_arrow()


def read_delta_table(
    spark: SparkSession,
    table_uri: str | Path,
    *,
    version: int | None = None,
    timestamp: datetime | str | None = None,
    storage_options: dict[str, str] | None = None,
) -> DataFrame:
    """A DataFrame of the Delta table at ``version`` (or ``timestamp``; latest when neither is given).

    Partition columns are recovered from the hive-style paths delta-rs writes (``basePath``), and
    an empty snapshot becomes an empty DataFrame with the table's schema.
    """
    import pyarrow as pa

    files, schema = delta_snapshot_files(
        table_uri, version=version, timestamp=timestamp, storage_options=storage_options
    )
    arrow_schema = pa.schema(schema)
    if not files:
        return spark.createDataFrame(arrow_schema.empty_table())
    root = str(table_uri)
    if "://" not in root:
        root = Path(root).resolve().as_uri()
    frame = spark.read.option("basePath", root).parquet(*files)
    # Select in the table's column order: partition columns otherwise come last.
    return frame.select(*arrow_schema.names)
