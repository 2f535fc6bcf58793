"""Benchmarks of ingest, serving, personas and lifetime value: each prints a table and writes its figures as JSON."""
