"""Typed task specs: one pydantic model per engine, the ``TaskSpec`` union the contract publishes."""
