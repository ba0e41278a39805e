"""Code shared by the SQL engines (Trino, DuckDB): statements, result streaming, history records, the task flow."""
