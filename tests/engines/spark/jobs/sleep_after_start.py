"""Starts a Spark session, says so, then sleeps far past any test's runtime limit."""

import time

from pyspark.sql import SparkSession

print("starting", flush=True)
spark = SparkSession.builder.appName("sleeper").getOrCreate()
print(f"sleeping in {spark.sparkContext.applicationId}", flush=True)
time.sleep(600)
