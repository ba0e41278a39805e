"""Demo Spark job: daily revenue per region from generated Parquet orders, written as a Delta table.

Run by the Spark engine (``spark-submit``), e.g. as the task::

    {"key": "daily_sales", "engine": "spark", "application": "examples/spark/daily_sales.py",
     "master": "local[2]",
     "args": ["--orders", "{output_path}/orders", "--generate-orders", "20000",
              "--regions", "/data/regions", "--output", "/data/daily_sales"]}

Orders are generated (deterministically from ``--seed``) when the folder does not exist yet.
Regions are an optional Delta table read through delta-rs at ``--regions-version``
(``executor_agent.engines.spark_support.delta_reader``), because Delta's Spark jars are not
available. The result (order_date, region, orders, revenue_cents, largest_order_cents) replaces
the output Delta table's contents in one commit, written with delta-rs from the driver.
"""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta
from pathlib import Path

REGION_IDS = (1, 2, 3, 4)


def generate_orders(folder: Path, *, rows: int, seed: int = 7, files: int = 4, days: int = 14) -> None:
    """Write ``rows`` orders as ``files`` Parquet files: order_id, order_date, region_id, amount_cents."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)  # noqa: S311 - repeatable demo data, not secrets
    first_day = date(2026, 1, 1)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-rows // files)
    for index in range(files):
        ids = range(index * per_file, min(rows, (index + 1) * per_file))
        table = pa.table(
            {
                "order_id": pa.array(list(ids), pa.int64()),
                "order_date": pa.array([first_day + timedelta(days=rng.randrange(days)) for _ in ids], pa.date32()),
                "region_id": pa.array([rng.choice(REGION_IDS) for _ in ids], pa.int32()),
                "amount_cents": pa.array([rng.randrange(100, 50_000) for _ in ids], pa.int64()),
            }
        )
        pq.write_table(table, folder / f"orders-{index:03d}.parquet")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", required=True, help="folder of Parquet orders (generated when missing)")
    parser.add_argument("--generate-orders", type=int, default=20_000, help="rows to generate when missing")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--regions", help="Delta table of region_id, region_name (optional)")
    parser.add_argument("--regions-version", type=int, help="version of the regions table to read")
    parser.add_argument("--output", required=True, help="Delta table to write")
    args = parser.parse_args(argv)

    orders_folder = Path(args.orders)
    if not orders_folder.exists():
        generate_orders(orders_folder, rows=args.generate_orders, seed=args.seed)
        print(f"generated {args.generate_orders} orders under {orders_folder}", flush=True)

    from deltalake import write_deltalake
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F  # noqa: N812 - the name every Spark codebase uses

    from executor_agent.engines.spark_support.delta_reader import read_delta_table

    spark = SparkSession.builder.appName("daily_sales").getOrCreate()
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()  # type: ignore[union-attr]
    print(
        f"driver memory setting: {spark.conf.get('spark.driver.memory', 'default')}; "
        f"driver JVM max heap: {runtime.maxMemory() // (1024 * 1024)} MiB",
        flush=True,
    )

    orders = spark.read.parquet(str(orders_folder))
    if args.regions:
        regions = read_delta_table(spark, args.regions, version=args.regions_version)
        orders = orders.join(F.broadcast(regions), "region_id").withColumnRenamed("region_name", "region")
    else:
        orders = orders.withColumn("region", F.concat(F.lit("region-"), F.col("region_id").cast("string")))
    daily = (
        orders.groupBy("order_date", "region")
        .agg(
            F.count("*").alias("orders"),
            F.sum("amount_cents").alias("revenue_cents"),
            F.max("amount_cents").alias("largest_order_cents"),
        )
        .orderBy("order_date", "region")
    )
    result = daily.toArrow()
    write_deltalake(args.output, result, mode="overwrite", schema_mode="overwrite")
    print(f"wrote {result.num_rows} rows to {args.output}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
