"""Run the Trino test server: ``python -m tests.trino_server --port 0 --ready-file F [--catalog lakehouse=PATH]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tests.trino_server.server import ServerConfig, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (written to --ready-file)")
    parser.add_argument("--ready-file", type=Path, required=True, help='gets {"port": N} once serving')
    parser.add_argument("--catalog", action="append", default=[], help="NAME=DUCKDB_PATH (or NAME=:memory:)")
    parser.add_argument("--auth", choices=("none", "basic", "jwt"), default="none")
    parser.add_argument("--user", action="append", default=[], help="basic auth USER:PASSWORD")
    parser.add_argument("--jwt-secret", default=None, help="HS256 secret for --auth jwt")
    parser.add_argument("--page-rows", type=int, default=10_000, help="rows per data page")
    parser.add_argument("--threads", type=int, default=1, help="DuckDB threads")
    parser.add_argument("--no-stats", action="append", default=[], help="CATALOG.SCHEMA.TABLE without statistics")
    args = parser.parse_args()
    catalogs = dict(item.split("=", 1) for item in args.catalog) or {"lakehouse": ":memory:"}
    users = dict(item.split(":", 1) for item in args.user)
    config = ServerConfig(
        catalogs=catalogs,
        auth=args.auth,
        users=users,
        jwt_secret=args.jwt_secret,
        page_rows=args.page_rows,
        threads=args.threads,
        tables_without_stats=frozenset(args.no_stats),
    )

    def ready(port: int) -> None:
        temporary = args.ready_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"port": port}), encoding="utf-8")
        temporary.replace(args.ready_file)

    serve(config, args.host, args.port, ready)


if __name__ == "__main__":
    main()
