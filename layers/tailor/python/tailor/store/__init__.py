"""Where Tailor keeps state: a port the domain writes through, with in-memory and AWS adapters."""

from tailor.store.port import TABLES, BlobStore, Conflict, StateStore

__all__ = ["BlobStore", "Conflict", "StateStore", "TABLES"]
