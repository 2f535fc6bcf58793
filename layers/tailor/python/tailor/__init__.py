"""Tailor's domain library: events, shopper state, ranking and models, shared by every function."""
