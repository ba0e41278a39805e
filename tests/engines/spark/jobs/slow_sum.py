"""Sums 0..N-1 over many partitions, each task taking a while (simulated work), so a test can lose a worker
while tasks run on both; prints the sum and writes it to ``<output>/sum.txt``."""

import sys
import time
from pathlib import Path

from pyspark.sql import SparkSession

numbers, partitions, seconds, output = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
spark = SparkSession.builder.appName("slow_sum").getOrCreate()


def slow_partition(rows):  # type: ignore[no-untyped-def]
    time.sleep(seconds)  # the work each task stands for
    yield sum(rows)


total = spark.sparkContext.parallelize(range(numbers), partitions).mapPartitions(slow_partition).sum()
print(f"sum {total}", flush=True)
output.mkdir(parents=True, exist_ok=True)
(output / "sum.txt").write_text(str(total))
spark.stop()
