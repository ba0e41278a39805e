"""executor_agent package."""
