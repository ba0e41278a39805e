"""Lakehouse executor agent: claims tasks from the control room over its HTTP contract and runs them on engines.

It never imports ``control_room``: agents are installed on their own (``packaging/executor-agent``).
"""

__version__ = "0.1.0"
