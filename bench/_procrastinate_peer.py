"""The peer queue of bench/claim_throughput.py: a procrastinate app with one no-op task, in a module of its
own (procrastinate wants its app outside the ``__main__`` module, where worker processes can import it)."""

from __future__ import annotations

import procrastinate


def peer_app(database_url: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url))

    @app.task(name="noop")
    def noop() -> None:
        return None

    return app
