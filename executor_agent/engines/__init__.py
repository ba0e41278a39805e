"""executor_agent.engines package."""
