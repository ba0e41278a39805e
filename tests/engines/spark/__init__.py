"""Spark engine and Delta operation tests."""
