"""Fails at once with a clear Python error (run through the engine's ``module`` launcher)."""

import sys

print(f"arguments: {sys.argv[1:]}", flush=True)
raise ValueError("the input folder is empty")
