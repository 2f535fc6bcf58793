"""Experiments: A/B tests and interleaving of feed strategies, their attribution, statistics and reports.

The statistics are pure functions of additive sufficient statistics (tailor.experiments.statistics): the daily rows
Ingest keeps per experiment and variant, summed up to any day.
"""
