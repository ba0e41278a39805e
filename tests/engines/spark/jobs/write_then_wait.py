"""Writes 3 MB under the task's output path (no Spark session needed), then waits to be stopped."""

import os
import time
from pathlib import Path

output = Path(os.environ["LAKEHOUSE_OUTPUT_PATH"])
for index in range(3):
    (output / f"part-{index}.bin").write_bytes(os.urandom(1024 * 1024))
print("wrote 3 MB", flush=True)
time.sleep(600)
