"""Access policies enforced on SQL tasks: statements are parsed with sqlglot, every table resolved to a
dataset, unauthorised reads and writes refused, row filters and column masks applied by rewriting."""

from executor_agent.policy.guard import AccessGuard, PolicyRefused

__all__ = ["AccessGuard", "PolicyRefused"]
