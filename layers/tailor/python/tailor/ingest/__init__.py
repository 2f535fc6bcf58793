"""Ingest: shopper events from the stream into session, shopper and shared-counter state."""
