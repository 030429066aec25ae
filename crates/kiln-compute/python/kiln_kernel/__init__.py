"""Kiln's execution-context kernel: one process per Databricks execution context.

It runs Python and SQL commands against the context's cluster (a Spark Connect
engine) and reports results in the REST API 1.2 shapes. See kernel.py for the
protocol spoken with the Kiln server.
"""
