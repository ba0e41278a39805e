"""SQL engine tests: Trino (against the test server) and DuckDB, through a recording task context."""
