"""A protocol-faithful Trino test server backed by DuckDB (``python -m tests.trino_server``); see server.py."""
