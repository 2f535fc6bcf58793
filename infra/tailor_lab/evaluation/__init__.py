"""Evaluations of what the product serves (next items, session intent, lifetime value, personas) on simulated and public data."""
